#!/usr/bin/env bash
# Runs a command with the test services it names.
#
#   .ci/services.sh kafka clickhouse [cluster] -- CMD [ARG...]
#
# For each service: if its variable (kafka: KAFKA_BROKERS, clickhouse: CLICKHOUSE_ADDR)
# is set, it is used as is; otherwise the variable is exported as 127.0.0.1:KAFKA_PORT
# (default 19092) or 127.0.0.1:CLICKHOUSE_PORT (default 19000), and .ci/NAME.sh start
# runs unless something already answers there. On exit (success, failure or Ctrl-C)
# only the services started here are stopped (cluster: .ci/cluster.sh, started unless its
# status says it runs). The exit status is CMD's.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=
trap 'for s in $started; do "$root/.ci/$s.sh" stop; done' EXIT
trap 'exit 130' INT TERM

# use NAME VAR ADDR
use() {
	if [ -n "${!2:-}" ]; then
		echo "$1: using $2=${!2}"
		return
	fi
	export "$2=$3"
	if "$root/.ci/$1.sh" status >/dev/null; then
		echo "$1: using running instance at $3"
	else
		started="$1 $started"
		"$root/.ci/$1.sh" start
	fi
}

while [ $# -gt 0 ] && [ "$1" != -- ]; do
	case $1 in
	kafka) use kafka KAFKA_BROKERS "127.0.0.1:${KAFKA_PORT:-19092}" ;;
	clickhouse) use clickhouse CLICKHOUSE_ADDR "127.0.0.1:${CLICKHOUSE_PORT:-19000}" ;;
	cluster) # the replicated setup of .ci/cluster.sh; its addresses come from .ci/cluster.sh env
		if "$root/.ci/cluster.sh" status >/dev/null 2>&1; then
			echo "cluster: using the running one"
		else
			started="cluster $started"
			"$root/.ci/cluster.sh" start
		fi
		;;
	*)
		echo "usage: $0 kafka|clickhouse|cluster... -- CMD [ARG...]" >&2
		exit 2
		;;
	esac
	shift
done
[ "${1:-}" = -- ] && [ $# -gt 1 ] || {
	echo "usage: $0 kafka|clickhouse|cluster... -- CMD [ARG...]" >&2
	exit 2
}
shift
"$@"

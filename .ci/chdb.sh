#!/usr/bin/env bash
# Installs the embedded ClickHouse engines that schemas/sql_test.go runs every statement on.
#
#   .ci/chdb.sh install   # (default) idempotent; prints nothing more once installed
#   .ci/chdb.sh dir       # prints the directory holding one folder per engine
#
# chdb-core 26.9.0 is ClickHouse 26.9 and chdb 2.1.1 is ClickHouse 24.8, each in-process.
# Both provide the python module `chdb`, so each goes into its own folder
# ($CHDB_DIR/26.9, $CHDB_DIR/24.8) with `pip install --no-deps --target`: the tests put one
# folder at a time on PYTHONPATH and run python3 -S (no site-packages), so neither
# engine nor anything installed system-wide leaks into the other. Neither needs its
# declared dependencies (pandas, pyarrow) to import and run queries in a Session.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${CHDB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/immeter/chdb}
engines=("26.9 chdb-core==26.9.0" "24.8 chdb==2.1.1")
name=chdb
# shellcheck source=.ci/lib.sh
. "$root/.ci/lib.sh"

install() {
	local e name pkg
	for e in "${engines[@]}"; do
		read -r name pkg <<<"$e"
		[ -f "$dir/$name/.complete" ] && continue
		command -v python3 >/dev/null || fail "python3 not found"
		say "installing $pkg into $dir/$name"
		rm -rf "$dir/$name"
		PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir/$name" "$pkg"
		PYTHONPATH="$dir/$name" python3 -S -c 'import chdb; from chdb import session; session.Session().query("SELECT 1")' ||
			fail "$pkg does not import from $dir/$name"
		touch "$dir/$name/.complete"
	done
}

case ${1:-install} in
install) install ;;
dir) echo "$dir" ;;
*)
	echo "usage: $0 install|dir" >&2
	exit 2
	;;
esac

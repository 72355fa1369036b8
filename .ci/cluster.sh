#!/usr/bin/env bash
# Runs a throwaway replicated setup on loopback for the cluster tests: ZooKeeper, two
# ClickHouse servers as replicas of one shard (cluster "immeter") and three KRaft Kafka
# brokers (each also a controller of a static quorum).
#
#   .ci/cluster.sh start|stop|status|env
#   .ci/cluster.sh pause kafka N | pause clickhouse N     stop one node, keep its data
#   .ci/cluster.sh resume kafka N | resume clickhouse N   start it again on its data
#
# Ports (private, so the single-node services of .ci/kafka.sh and .ci/clickhouse.sh keep
# running): ZooKeeper 22181; ClickHouse native 29000+N-1, HTTP 28123+N-1, interserver
# 29009+N-1; Kafka brokers 29092+N-1, controllers 29192+N-1. Everything lives in
# $IMMETER_RUN_DIR/cluster and is removed by stop. `env` prints the settings that point
# immeter at the cluster.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run=${IMMETER_RUN_DIR:-$root/.run}/cluster
zk_port=${ZOOKEEPER_PORT:-22181}
ch_port=29000 ch_http=28123 ch_inter=29009 ch_nodes=2
kafka_port=29092 kafka_controller=29192 kafka_nodes=3
cluster=immeter

say() { echo "cluster: $*"; }
fail() {
	echo "cluster: $*" >&2
	exit 1
}

# --- ZooKeeper (Debian's zookeeper package) ---------------------------------------

zk_dir=$run/zookeeper
zk_answers() { [ "$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$zk_port; echo ruok >&3; head -c 4 <&3" 2>/dev/null)" = imok ]; }
zk_ours() {
	local pid
	pid=$(cat "$zk_dir/zookeeper.pid" 2>/dev/null) || return 1
	grep -qa "$zk_dir/zoo.cfg" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

zk_start() {
	if zk_answers; then
		say "ZooKeeper already running on 127.0.0.1:$zk_port"
		return
	fi
	if [ ! -f /usr/share/java/zookeeper.jar ]; then
		local sudo=''
		[ "$(id -u)" = 0 ] || sudo=sudo
		say "installing zookeeper with apt-get"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
	fi
	mkdir -p "$zk_dir/data"
	cat >"$zk_dir/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$zk_dir/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
EOF
	cat >"$zk_dir/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
	setsid java -Xmx256m -cp "$zk_dir:/usr/share/java/zookeeper.jar" \
		org.apache.zookeeper.server.ZooKeeperServerMain "$zk_dir/zoo.cfg" >"$zk_dir/zookeeper.log" 2>&1 </dev/null &
	echo $! >"$zk_dir/zookeeper.pid"
	local t0=$SECONDS
	until zk_answers; do
		kill -0 "$(cat "$zk_dir/zookeeper.pid")" 2>/dev/null || {
			tail -n 30 "$zk_dir/zookeeper.log" >&2
			fail "ZooKeeper exited during start-up"
		}
		((SECONDS - t0 < 60)) || fail "ZooKeeper not answering on 127.0.0.1:$zk_port"
		sleep 0.5
	done
	say "started ZooKeeper 127.0.0.1:$zk_port (pid $(cat "$zk_dir/zookeeper.pid"))"
}

zk_stop() {
	local pid
	if pid=$(zk_ours); then
		kill "$pid"
		for _ in $(seq 40); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		kill -9 "$pid" 2>/dev/null || true
		say "stopped ZooKeeper (pid $pid)"
	fi
}

# --- ClickHouse replicas (.ci/clickhouse.sh with a config of their own) -------------

ch_config() { # the cluster part of every replica's config; $1 = replica number
	local n=$1 i
	echo "    <zookeeper><node><host>127.0.0.1</host><port>$zk_port</port></node></zookeeper>"
	echo "    <macros><shard>01</shard><replica>r$n</replica></macros>"
	echo "    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>"
	echo "    <remote_servers><$cluster><shard><internal_replication>true</internal_replication>"
	for i in $(seq "$ch_nodes"); do
		echo "        <replica><host>127.0.0.1</host><port>$((ch_port + i - 1))</port></replica>"
	done
	echo "    </shard></$cluster></remote_servers>"
}

ch() { # .ci/clickhouse.sh $2 for replica $1
	local n=$1
	mkdir -p "$run/ch$n"
	ch_config "$n" >"$run/ch$n.xml"
	IMMETER_RUN_DIR=$run/ch$n CLICKHOUSE_PORT=$((ch_port + n - 1)) CLICKHOUSE_HTTP_PORT=$((ch_http + n - 1)) \
		CLICKHOUSE_INTERSERVER_PORT=$((ch_inter + n - 1)) CLICKHOUSE_EXTRA_CONFIG=$run/ch$n.xml \
		"$root/.ci/clickhouse.sh" "$2"
}

# --- Kafka brokers (.ci/kafka.sh in cluster mode) ------------------------------------

kafka() { # .ci/kafka.sh $2 for broker $1
	local n=$1 i voters=''
	for i in $(seq "$kafka_nodes"); do
		voters+="${voters:+,}$i@127.0.0.1:$((kafka_controller + i - 1))"
	done
	IMMETER_RUN_DIR=$run/kafka$n KAFKA_PORT=$((kafka_port + n - 1)) KAFKA_CONTROLLER_PORT=$((kafka_controller + n - 1)) \
		KAFKA_NODE_ID=$n KAFKA_VOTERS=$voters KAFKA_CLUSTER_ID=$(cat "$run/kafka-cluster-id" 2>/dev/null) \
		KAFKA_REPLICAS=$kafka_nodes KAFKA_START_TIMEOUT=120 KAFKA_JAVA_OPTS="-Xms128m -Xmx384m ${KAFKA_JAVA_OPTS:-}" \
		"$root/.ci/kafka.sh" "$2"
}

# --- the whole set ---------------------------------------------------------------------

env_lines() {
	local i ks='' cs=''
	for i in $(seq "$kafka_nodes"); do ks+="${ks:+,}127.0.0.1:$((kafka_port + i - 1))"; done
	for i in $(seq "$ch_nodes"); do cs+="${cs:+,}127.0.0.1:$((ch_port + i - 1))"; done
	echo "KAFKA_BROKERS=$ks"
	echo "KAFKA_REPLICATION=$kafka_nodes"
	echo "CLICKHOUSE_ADDR=$cs"
	echo "CLICKHOUSE_CLUSTER=$cluster"
}

start() {
	mkdir -p "$run"
	zk_start
	# All brokers at once: a controller quorum of three needs two to elect a leader.
	[ -f "$run/kafka-cluster-id" ] ||
		head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$run/kafka-cluster-id"
	local pids=() i rc=0
	for i in $(seq "$kafka_nodes"); do
		kafka "$i" start &
		pids+=($!)
	done
	for i in $(seq "$ch_nodes"); do ch "$i" start || rc=$?; done
	for p in "${pids[@]}"; do wait "$p" || rc=$?; done
	[ "$rc" = 0 ] || {
		stop
		fail "start failed"
	}
	say "up; settings for immeter:"
	env_lines | sed 's/^/  /'
}

stop() {
	local i
	for i in $(seq "$kafka_nodes"); do
		[ ! -d "$run/kafka$i" ] || kafka "$i" stop || true
	done
	for i in $(seq "$ch_nodes"); do
		[ ! -d "$run/ch$i" ] || ch "$i" stop || true
	done
	zk_stop
	rm -rf "$run"
}

status() {
	local i rc=0
	zk_answers && say "ZooKeeper up on 127.0.0.1:$zk_port" || {
		say "ZooKeeper down"
		rc=1
	}
	for i in $(seq "$ch_nodes"); do ch "$i" status || rc=1; done
	for i in $(seq "$kafka_nodes"); do kafka "$i" status || rc=1; done
	return $rc
}

node() { # pause|resume kafka|clickhouse N
	local action=$1 kind=${2:-} n=${3:-}
	case $kind in
	kafka) ((n >= 1 && n <= kafka_nodes)) || fail "kafka node: 1..$kafka_nodes" ;;
	clickhouse) ((n >= 1 && n <= ch_nodes)) || fail "clickhouse node: 1..$ch_nodes" ;;
	*) fail "usage: $0 $action kafka|clickhouse N" ;;
	esac
	local verb=pause
	[ "$action" = pause ] || verb=start
	if [ "$kind" = kafka ]; then kafka "$n" "$verb"; else ch "$n" "$verb"; fi
}

case ${1:-} in
start | stop | status) "$1" ;;
env) env_lines ;;
pause | resume) node "$@" ;;
*)
	echo "usage: $0 start|stop|status|env | pause|resume kafka|clickhouse N" >&2
	exit 2
	;;
esac

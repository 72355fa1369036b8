#!/usr/bin/env bash
# Runs a throwaway single-node Kafka (KRaft broker+controller) on loopback for tests.
#
#   .ci/kafka.sh start|stop|pause|status
#
# The Kafka jars come from Maven Central (fetched once with mvn into KAFKA_CACHE_DIR);
# data, config, pid and log live in $IMMETER_RUN_DIR/kafka and are removed by stop.
# pause stops the broker but keeps its data; the next start resumes on it (tests of a
# broker restart).
#
# Cluster mode (.ci/cluster.sh): KAFKA_NODE_ID, KAFKA_VOTERS (controller.quorum.voters,
# e.g. 1@127.0.0.1:29192,2@…), KAFKA_CLUSTER_ID (the same for every node) and
# KAFKA_REPLICAS (replication of the internal topics, default and min.insync.replicas =
# KAFKA_REPLICAS-1) make this node one of a static KRaft quorum; start does not wait for
# the others, so start all nodes at once.
#
# KAFKA_SASL_SSL_PORT adds a SASL_SSL listener there (TLS with a client certificate
# required, SCRAM-SHA-512 and PLAIN): the script makes a CA, a server and a client
# certificate with openssl in $IMMETER_RUN_DIR/kafka/tls (ca.pem, client.pem,
# client-key.pem) and creates the users immeter / immeter-scram-secret (SCRAM, at
# format time) and immeter / immeter-plain-secret (PLAIN). Test credentials only.
set -euo pipefail

version=4.1.1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${KAFKA_PORT:-19092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
cache=${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/immeter/kafka-$version}
dir=${IMMETER_RUN_DIR:-$root/.run}/kafka
pidfile=$dir/kafka.pid
log=$dir/kafka.log
timeout=${KAFKA_START_TIMEOUT:-60}
node_id=${KAFKA_NODE_ID:-1}
voters=${KAFKA_VOTERS:-}
replicas=${KAFKA_REPLICAS:-1}
min_isr=$((replicas > 1 ? replicas - 1 : 1))
name=kafka
ours_match=kafka.Kafka
logs=("$log")
# shellcheck source=.ci/lib.sh
. "$root/.ci/lib.sh"

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; }

fetch() {
	# kcat, a third-party client the ingest tests publish with.
	command -v kcat >/dev/null || apt_install kcat
	[ -f "$cache/.complete" ] && return
	if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
		apt_install openjdk-17-jre-headless maven
	fi
	say "fetching Kafka $version jars from Maven Central into $cache"
	local tmp
	tmp=$(mktemp -d)
	cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>immeter</groupId><artifactId>kafka-fetch</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
EOF
	rm -rf "$cache/libs"
	mkdir -p "$cache"
	if ! (cd "$tmp" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$cache/libs") >"$tmp/mvn.log" 2>&1; then
		cat "$tmp/mvn.log" >&2
		fail "fetching the Kafka jars with mvn failed"
	fi
	rm -rf "$tmp"
	touch "$cache/.complete"
}

# tool runs a Kafka CLI class against the cached jars with quiet logging.
tool() {
	timeout 60 java -Xmx256m -Dlog4j.configuration="file:$dir/tools-log4j.properties" \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$cache/libs/*" "$@"
}

sasl_port=${KAFKA_SASL_SSL_PORT:-}

# make_certs writes a CA, a broker certificate for 127.0.0.1 and localhost, and a client
# certificate into $dir/tls; the broker's key is PKCS#8, encrypted with a scheme Java 17 reads.
make_certs() {
	local t=$dir/tls
	mkdir -p "$t"
	(
		cd "$t"
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=immeter-test-ca -keyout ca-key.pem -out ca.pem
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
		openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem -out server.csr
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile san.ext -out server.pem
		openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -passout pass:immeter-key -in server-key.pem -out server-key.p8
		cat server-key.p8 server.pem >server-keystore.pem
		openssl req -newkey rsa:2048 -nodes -subj /CN=immeter-client -keyout client-key.pem -out client.csr
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -out client.pem
	) >"$dir/tls.log" 2>&1 || fail "making certificates with openssl failed (see $dir/tls.log)"
}

write_config() {
	local listeners="PLAINTEXT://127.0.0.1:$port" map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
	if [ -n "$sasl_port" ]; then
		listeners="$listeners,SASL_SSL://127.0.0.1:$sasl_port"
		map="$map,SASL_SSL:SASL_SSL"
	fi
	cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$node_id
listeners=$listeners,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listeners
listener.security.protocol.map=$map
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
$(if [ -n "$voters" ]; then echo "controller.quorum.voters=$voters"; else echo "controller.quorum.bootstrap.servers=127.0.0.1:$controller_port"; fi)
log.dirs=$dir/data
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
default.replication.factor=$replicas
min.insync.replicas=$min_isr
group.initial.rebalance.delay.ms=0
num.partitions=4
auto.create.topics.enable=true
EOF
	if [ -n "$sasl_port" ]; then
		make_certs
		cat >>"$dir/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_immeter="immeter-plain-secret";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/server-keystore.pem
listener.name.sasl_ssl.ssl.key.password=immeter-key
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$dir/tls/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
EOF
	fi
	# Kafka logs through slf4j->reload4j (log4j 1.x syntax); log4j2 only needs to stay quiet.
	cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
	sed 's/INFO, out/WARN, out/; $a log4j.appender.out.Target=System.err' \
		"$dir/log4j.properties" >"$dir/tools-log4j.properties"
	cat >"$dir/log4j2.properties" <<'EOF'
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
EOF
}

start() {
	if answers; then
		say "already running on 127.0.0.1:$port"
		return
	fi
	if [ -f "$dir/paused" ]; then
		rm -f "$dir/paused" # resume on the data of a paused broker
	else
		stop >/dev/null # leftovers of a broker that died or never came up
		fetch
		mkdir -p "$dir/data"
		write_config
		# A cluster id is 16 random bytes in URL-safe base64 without padding; it may
		# start with "-", hence --cluster-id=ID rather than -t ID.
		local id=${KAFKA_CLUSTER_ID:-} quorum=--standalone
		[ -n "$id" ] || id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
		[ -z "$voters" ] || quorum= # a static quorum: controller.quorum.voters
		local scram=()
		[ -z "$sasl_port" ] || scram=(--add-scram 'SCRAM-SHA-512=[name=immeter,password=immeter-scram-secret]')
		# shellcheck disable=SC2086 # $quorum is one flag or none
		tool kafka.tools.StorageTool format $quorum --cluster-id="$id" "${scram[@]}" -c "$dir/server.properties" >"$log" 2>&1 ||
			fail "formatting the log dir failed"
	fi
	# The start-up budget begins here: fetching the jars on a fresh machine
	# (minutes from Maven Central) does not count against it.
	local t0=$SECONDS
	# setsid: keep the broker out of the terminal's process group, so Ctrl-C reaches
	# the caller (whose trap runs stop) rather than killing the broker underneath it.
	# shellcheck disable=SC2086 # KAFKA_JAVA_OPTS is a list of JVM flags
	setsid java -Xms256m -Xmx512m ${KAFKA_JAVA_OPTS:-} \
		-Dlog4j.configuration="file:$dir/log4j.properties" \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" \
		-cp "$cache/libs/*" kafka.Kafka "$dir/server.properties" >>"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	until answers; do
		kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "broker exited during start-up"
		((SECONDS - t0 < timeout)) || fail "broker not answering on 127.0.0.1:$port after ${timeout}s"
		sleep 0.5
	done
	until tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null; do
		((SECONDS - t0 < timeout)) || fail "broker accepts connections but does not serve metadata"
		sleep 1
	done
	say "started broker 127.0.0.1:$port (pid $(cat "$pidfile")) in $((SECONDS - t0))s; log $log"
}

halt() {
	local pid
	if pid=$(ours); then
		kill "$pid"
		for _ in $(seq 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$pid" 2>/dev/null || true
		say "stopped broker (pid $pid)"
	fi
}

pause() {
	[ -d "$dir/data" ] || fail "nothing to pause: no broker data in $dir"
	halt
	touch "$dir/paused"
}

stop() {
	local pid
	if pid=$(ours); then
		kill "$pid"
		for _ in $(seq 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$pid" 2>/dev/null || true
		say "stopped broker (pid $pid)"
	else
		say "nothing to stop (no broker started by this script)"
	fi
	rm -rf "$dir"
}

status() {
	if answers; then
		say "up on 127.0.0.1:$port"
	else
		say "down (127.0.0.1:$port)"
		return 1
	fi
}

case ${1:-} in
start | stop | pause | status) "$1" ;;
*)
	echo "usage: $0 start|stop|pause|status" >&2
	exit 2
	;;
esac

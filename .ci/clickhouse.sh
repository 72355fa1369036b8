#!/usr/bin/env bash
# Runs a private, throwaway ClickHouse server on loopback for tests.
#
#   .ci/clickhouse.sh start|stop|pause|status
#
# CLICKHOUSE_SECURE_PORT adds the native protocol over TLS there (tcp_port_secure), with a
# certificate for 127.0.0.1 and localhost signed by a CA the script makes with openssl:
# $IMMETER_RUN_DIR/clickhouse/tls/ca.pem verifies it.
#
# CLICKHOUSE_USERS_D names a directory whose *.xml files are copied into the server's
# users.d (e.g. schemas/access/users.d, with passwords filled in).
#
# Installs clickhouse-server/clickhouse-client with apt-get when missing. Config, data,
# pid and log live in $IMMETER_RUN_DIR/clickhouse and are removed by stop; the system
# instance (/etc/clickhouse-server, /var/lib/clickhouse) is never touched. pause stops
# the server but keeps its data: the next start resumes on it (fault tests use this).
#
# Replicas (.ci/cluster.sh): CLICKHOUSE_INTERSERVER_PORT opens the port replicas fetch
# parts from, and CLICKHOUSE_EXTRA_CONFIG names a file of XML elements added to the
# server config (<zookeeper>, <macros>, <remote_servers>, <distributed_ddl>).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${CLICKHOUSE_PORT:-19000}
http_port=${CLICKHOUSE_HTTP_PORT:-18123}
dir=${IMMETER_RUN_DIR:-$root/.run}/clickhouse
pidfile=$dir/clickhouse.pid
log=$dir/log/clickhouse-server.log
timeout=${CLICKHOUSE_START_TIMEOUT:-60}
interserver_port=${CLICKHOUSE_INTERSERVER_PORT:-}
extra=${CLICKHOUSE_EXTRA_CONFIG:-}
name=clickhouse
ours_match=$dir/config.xml
logs=("$dir/stdout.log" "$log")
# shellcheck source=.ci/lib.sh
. "$root/.ci/lib.sh"

# Debian ships clickhouse-server/clickhouse-client; upstream packages ship one `clickhouse` binary.
query() {
	local client=(clickhouse client)
	command -v clickhouse-client >/dev/null && client=(clickhouse-client)
	timeout 10 "${client[@]}" --host 127.0.0.1 --port "$port" -q "$1" 2>/dev/null
}

install() {
	command -v clickhouse-server >/dev/null || command -v clickhouse >/dev/null || {
		local sudo='' policy=/usr/sbin/policy-rc.d created=''
		[ "$(id -u)" = 0 ] || sudo=sudo
		say "installing clickhouse-server and clickhouse-client with apt-get"
		# Keep the package's postinst from starting the system-wide server on port 9000.
		if [ ! -e "$policy" ]; then
			printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
			$sudo chmod +x "$policy"
			created=1
		fi
		local rc=0
		$sudo apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
				clickhouse-server clickhouse-client >/dev/null || rc=$?
		[ -z "$created" ] || $sudo rm -f "$policy"
		[ "$rc" = 0 ] || fail "apt-get install failed"
	}
}

secure_port=${CLICKHOUSE_SECURE_PORT:-}

# make_certs writes a CA and a server certificate for 127.0.0.1 and localhost into $dir/tls.
make_certs() {
	mkdir -p "$dir/tls"
	(
		cd "$dir/tls"
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=immeter-test-ca -keyout ca-key.pem -out ca.pem
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
		openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server-key.pem -out server.csr
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile san.ext -out server.pem
	) >"$dir/tls.log" 2>&1 || fail "making certificates with openssl failed (see $dir/tls.log)"
}

# secure_config prints the config of the TLS port, if one is asked for.
secure_config() {
	[ -n "$secure_port" ] || return 0
	cat <<EOF
    <tcp_port_secure>$secure_port</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$dir/tls/server.pem</certificateFile>
            <privateKeyFile>$dir/tls/server-key.pem</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
EOF
}

write_config() {
	[ -z "$secure_port" ] || make_certs
	cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$port</tcp_port>
    <http_port>$http_port</http_port>
$(secure_config)
$(if [ -n "$interserver_port" ]; then
		echo "    <interserver_http_port>$interserver_port</interserver_http_port>"
		echo "    <interserver_http_host>127.0.0.1</interserver_http_host>"
	else
		echo "    <!-- no interserver_http_port: no replication, so nothing else listens -->"
	fi)
    <max_connections>1024</max_connections>
    <max_concurrent_queries>100</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
$([ -z "$extra" ] || cat "$extra")
</yandex>
EOF
	cat >"$dir/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

start() {
	local version
	if version=$(query 'SELECT version()'); then
		say "already running on 127.0.0.1:$port (version $version)"
		return
	fi
	if [ -f "$dir/paused" ]; then
		halt >/dev/null # resume on the data of a paused server
		rm -f "$dir/paused"
	else
		stop >/dev/null # leftovers of a server that died or never came up
	fi
	install
	local t0=$SECONDS
	mkdir -p "$dir/log" "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
	write_config
	if [ -n "${CLICKHOUSE_USERS_D:-}" ]; then
		mkdir -p "$dir/users.d"
		cp "$CLICKHOUSE_USERS_D"/*.xml "$dir/users.d/"
	fi
	# setsid: keep the server out of the terminal's process group, so Ctrl-C reaches
	# the caller (whose trap runs stop) rather than killing the server underneath it.
	local cmd=(clickhouse server)
	command -v clickhouse-server >/dev/null && cmd=(clickhouse-server)
	setsid "${cmd[@]}" --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	until version=$(query 'SELECT version()'); do
		kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "server exited during start-up"
		((SECONDS - t0 < timeout)) || fail "server not answering on 127.0.0.1:$port after ${timeout}s"
		sleep 0.5
	done
	say "started server 127.0.0.1:$port version $version (pid $(cat "$pidfile")) in $((SECONDS - t0))s; log $log"
}

halt() { # stops our server, if it runs
	local pid
	if pid=$(ours); then
		kill "$pid"
		for _ in $(seq 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$pid" 2>/dev/null || true
		say "stopped server (pid $pid)"
	else
		say "nothing to stop (no server started by this script)"
	fi
}

stop() {
	halt
	rm -rf "$dir"
}

pause() {
	[ -d "$dir" ] || fail "nothing to pause: no server directory $dir"
	halt
	touch "$dir/paused"
}

status() {
	local version
	if version=$(query 'SELECT version()'); then
		say "up on 127.0.0.1:$port (version $version)"
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

# Helpers shared by the .ci scripts; source it after setting
#   name      prefix of messages (say, fail)
#   pidfile   pid file of the process the script started (ours, fail)
#   ours_match  a string in that process's command line that makes it ours
#   logs      array of log files whose tails fail prints
# shellcheck shell=bash

say() { echo "$name: $*"; }

ours() { # prints the pid from the pid file if that process is ours
	local pid
	pid=$(cat "${pidfile:-}" 2>/dev/null) || return 1
	grep -qa "$ours_match" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

# fail prints the message and the tails of the logs, kills our process and exits 1.
fail() {
	echo "$name: $*" >&2
	local f pid
	for f in ${logs[@]+"${logs[@]}"}; do
		[ -s "$f" ] || continue
		echo "--- tail of $f" >&2
		tail -n 40 "$f" >&2
	done
	if pid=$(ours); then kill -9 "$pid" 2>/dev/null || true; fi
	exit 1
}

apt_install() {
	local sudo=''
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

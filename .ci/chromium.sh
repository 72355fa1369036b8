#!/usr/bin/env bash
# Headless Chromium for the console's browser test (cmd/immeter/console_test.go).
#   .ci/chromium.sh install   install Debian's chromium package unless a chromium is on PATH
set -euo pipefail
case "${1:-}" in
install)
	if command -v chromium >/dev/null; then
		echo "chromium: $(chromium --version 2>/dev/null | head -1)"
		exit 0
	fi
	echo "chromium: installing Debian's chromium package (apt-get)"
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
	echo "chromium: $(chromium --version 2>/dev/null | head -1)"
	;;
*)
	echo "usage: $0 install" >&2
	exit 2
	;;
esac

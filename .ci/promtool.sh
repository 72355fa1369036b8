#!/usr/bin/env bash
# Checks the Prometheus configuration and alerting rules in deploy/prometheus with promtool,
# and runs the rules' unit tests (alerts_test.yml).
#
#   .ci/promtool.sh
#
# Installs promtool with apt-get (Debian package prometheus) when missing, keeping the
# package from starting a Prometheus server. Without apt-get it says so and exits 0: the
# Go test TestAlertRules (./telemetry) still checks the rules' metrics and structure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v promtool >/dev/null; then
	if ! command -v apt-get >/dev/null; then
		echo "promtool: not installed and no apt-get; skipped (TestAlertRules checks the rules)"
		exit 0
	fi
	sudo='' policy=/usr/sbin/policy-rc.d created=''
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "promtool: installing the Debian package prometheus with apt-get"
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod +x "$policy"
		created=1
	fi
	rc=0
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null || rc=$?
	[ -z "$created" ] || $sudo rm -f "$policy"
	if [ "$rc" != 0 ]; then
		echo "promtool: apt-get install failed; skipped (TestAlertRules checks the rules)"
		exit 0
	fi
fi
promtool check config "$root/deploy/prometheus/prometheus.yml"
promtool test rules "$root/deploy/prometheus/alerts_test.yml"

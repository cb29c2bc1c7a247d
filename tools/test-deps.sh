#!/usr/bin/env bash
# Installs what the tests need that Go modules cannot bring: mosquitto (the
# real MQTT broker the end-to-end tests run against). As root it uses
# apt-get; otherwise it says what to install and fails.
set -euo pipefail

have_mosquitto() {
	[ -x /usr/sbin/mosquitto ] || [ -x /usr/local/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1
}

if have_mosquitto; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: installing mosquitto with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
	# The package's service is not wanted: tests start their own brokers.
	if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
	have_mosquitto && exit 0
fi
echo "test-deps: mosquitto is missing. Install it (Debian/Ubuntu: sudo apt-get install -y mosquitto) and run make test again." >&2
exit 1

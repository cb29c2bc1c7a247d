#!/usr/bin/env bash
# Installs what the tests need that Go modules cannot bring: mosquitto (the
# MQTT broker the end-to-end tests run against) and chromium (the dashboard's
# browser test). As root it uses apt-get; otherwise it says what to install
# and fails. (qemu-user-static is installed by tools/qemu-test.sh.)
set -euo pipefail

missing=()
[ -x /usr/sbin/mosquitto ] || [ -x /usr/local/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: installing ${missing[*]} with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The broker's service is not wanted: tests start their own brokers.
	if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
	exit 0
fi
echo "test-deps: missing ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}) and run make test again." >&2
exit 1

#!/usr/bin/env bash
# Builds the .deb packages and checks the amd64 one: as root it is installed
# with dpkg, `sluice version` and `sluice validate` run from the installed
# files, and `dpkg -r` removes it cleanly (the config and data stay, as
# Debian does for conffiles until purge). Without root the package is
# unpacked with dpkg-deb and checked the same way, minus install/remove.
set -euo pipefail
cd "$(dirname "$0")/.."

make -s package
deb=$(ls -t dist/sluice_*_amd64.deb | head -1)
echo "deb-test: $deb ($(stat -c %s "$deb") bytes)"
contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/sluice ./lib/systemd/system/sluice.service ./etc/sluice/sluice.yaml; do
	grep -q " $f\$" <<<"$contents" || { echo "deb-test: FAIL: $f missing from the package" >&2; exit 1; }
done

if [ "$(id -u)" != 0 ]; then
	tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
	dpkg-deb -x "$deb" "$tmp"
	"$tmp/usr/bin/sluice" version
	"$tmp/usr/bin/sluice" validate --config "$tmp/etc/sluice/sluice.yaml"
	echo "deb-test: ok (unpacked; run as root to test dpkg -i and dpkg -r)"
	exit 0
fi

dpkg -i "$deb"
trap 'dpkg --purge sluice >/dev/null 2>&1 || true' EXIT
/usr/bin/sluice version
/usr/bin/sluice validate --config /etc/sluice/sluice.yaml
dpkg -s sluice | grep -q '^Status: install ok installed' || { echo "deb-test: FAIL: not installed" >&2; exit 1; }
dpkg -r sluice
if [ -e /usr/bin/sluice ] || [ -e /lib/systemd/system/sluice.service ]; then
	echo "deb-test: FAIL: files left after dpkg -r" >&2
	exit 1
fi
dpkg --purge sluice
[ ! -e /etc/sluice/sluice.yaml ] || { echo "deb-test: FAIL: config left after purge" >&2; exit 1; }
echo "deb-test: ok (installed, ran, removed, purged)"

#!/bin/sh
# Installs sluice for this machine's architecture from dist/ (make cross), a
# default config (kept if one exists), and the service (systemd or OpenWrt's
# procd), then starts it. --uninstall removes everything but the data in
# /var/lib/sluice.
#
#   sudo sh deploy/install.sh [--dist DIR] [--uninstall]
set -eu

dist=dist
action=install
while [ $# -gt 0 ]; do
	case "$1" in
	--dist) dist=$2; shift 2 ;;
	--uninstall) action=uninstall; shift ;;
	*) echo "usage: $0 [--dist DIR] [--uninstall]" >&2; exit 2 ;;
	esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

if [ -d /run/systemd/system ]; then init=systemd
elif [ -f /etc/rc.common ]; then init=procd
else init=none; fi

if [ "$action" = uninstall ]; then
	case $init in
	systemd) systemctl disable --now sluice 2>/dev/null || true; rm -f /etc/systemd/system/sluice.service; systemctl daemon-reload ;;
	procd) /etc/init.d/sluice stop 2>/dev/null || true; /etc/init.d/sluice disable 2>/dev/null || true; rm -f /etc/init.d/sluice ;;
	esac
	rm -f /usr/bin/sluice
	rm -rf /etc/sluice
	echo "sluice removed; data kept in /var/lib/sluice"
	exit 0
fi

case $(uname -m) in
x86_64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
armv7l | armv8l) arch=armv7 ;;
armv6l) arch=armv6 ;;
riscv64) arch=riscv64 ;;
mips) echo "install.sh: big-endian MIPS is not built; use mipsle routers" >&2; exit 1 ;;
mipsel | mipsle) arch=mipsle ;;
*) echo "install.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

bin="$here/$dist/sluice-linux-$arch"
[ -x "$bin" ] || { echo "install.sh: $bin not found: run make cross first" >&2; exit 1; }
install -m 0755 "$bin" /usr/bin/sluice
mkdir -p /etc/sluice /var/lib/sluice
[ -f /etc/sluice/sluice.yaml ] || install -m 0644 "$here/examples/gateway.yaml" /etc/sluice/sluice.yaml
/usr/bin/sluice validate --config /etc/sluice/sluice.yaml

case $init in
systemd)
	install -m 0644 "$here/deploy/systemd/sluice.service" /etc/systemd/system/sluice.service
	systemctl daemon-reload
	systemctl enable --now sluice
	;;
procd)
	install -m 0755 "$here/deploy/openwrt/sluice.init" /etc/init.d/sluice
	/etc/init.d/sluice enable
	/etc/init.d/sluice start
	;;
none)
	echo "install.sh: no systemd or procd found; start it with: sluice run --config /etc/sluice/sluice.yaml"
	;;
esac
echo "sluice $(/usr/bin/sluice version) installed for $arch ($init)"

#!/usr/bin/env bash
# Cross-builds sluice for the gateway CPUs that are easy to get wrong (32-bit
# ARM, 64-bit ARM, soft-float MIPS) and runs each binary under
# qemu-user-static: `sluice version`, `sluice validate` on every example
# config, and `sluice selftest`, the whole pipeline with a known load. It also
# enforces the size budget: sluice for linux/arm64 at most 13 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

budget_arm64=$((13 * 1024 * 1024))

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "qemu-test: installing qemu-user-static with apt-get" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
	else
		echo "qemu-test: qemu-user-static is missing; install it (sudo apt-get install -y qemu-user-static)" >&2
		exit 1
	fi
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ldflags="-s -w -X main.version=qemu-test"

# name GOARCH variant qemu
targets="arm64:arm64::qemu-aarch64-static armv7:arm:7:qemu-arm-static mipsle:mipsle:softfloat:qemu-mipsel-static"
for t in $targets; do
	IFS=: read -r name arch variant qemu <<<"$t"
	bin="$out/sluice-$name"
	GOARM= GOMIPS=
	[ "$arch" = arm ] && GOARM=$variant
	[ "$arch" = mipsle ] && GOMIPS=$variant
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$GOARM GOMIPS=$GOMIPS go build -trimpath -ldflags "$ldflags" -o "$bin" ./agent
	size=$(stat -c %s "$bin")
	awk -v n="$name" -v s="$size" 'BEGIN { printf "qemu-test: %-7s %d bytes (%.2f MiB)\n", n, s, s / 1048576 }'
	if [ "$name" = arm64 ] && [ "$size" -gt "$budget_arm64" ]; then
		echo "qemu-test: FAIL: sluice for linux/arm64 is $size bytes, over the 13 MiB budget" >&2
		exit 1
	fi
	"$qemu" "$bin" version
	for cfg in examples/*.yaml; do
		"$qemu" "$bin" validate --config "$cfg"
	done
	"$qemu" "$bin" selftest
done
echo "qemu-test: ok"

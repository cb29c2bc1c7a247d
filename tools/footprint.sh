#!/usr/bin/env bash
# Prints what each dependency adds to a stripped linux/arm64 binary: a main
# that imports only that package, minus an empty main. Dependencies share
# standard-library code, so the rows add up to more than the real binary,
# which is printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
build() { CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags '-s -w' -o "$tmp/bin" "$1" && stat -c %s "$tmp/bin"; }
mib() { awk -v s="$1" 'BEGIN { printf "%6.2f MiB", s / 1048576 }'; }

echo "sluice (linux/arm64, stripped): $(mib "$(build ./agent)")"
mkdir -p "$tmp/empty"
printf 'package main\nfunc main() {}\n' > "$tmp/empty/main.go"
base=$(cd "$tmp/empty" && GOFLAGS=-mod=mod build . 2>/dev/null || true)
for pkg in \
	github.com/eclipse/paho.mqtt.golang \
	go.etcd.io/bbolt \
	github.com/nats-io/nats.go \
	github.com/nats-io/nats.go/jetstream \
	github.com/mochi-mqtt/server/v2 \
	go.yaml.in/yaml/v3 \
	log/slog \
	net/http; do
	d="$tmp/m"; rm -rf "$d"; mkdir -p "$d"
	printf 'package main\nimport _ "%s"\nfunc main() {}\n' "$pkg" > "$d/main.go"
	cp go.mod go.sum "$d/"
	sed -i 's|^module .*|module footprint|' "$d/go.mod"
	size=$(cd "$d" && build .)
	[ -n "$base" ] || base=$(cd "$d" && printf 'package main\nfunc main() {}\n' > main.go && build .)
	echo "  +$(mib $((size - base)))  $pkg"
done

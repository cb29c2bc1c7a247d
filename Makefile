# Sluice: `make demo` shows it working, `make test` proves it. Both set up what
# they need on a fresh machine with Go (make test installs mosquitto with
# apt-get when run as root, or says what to install).

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOBUILD := CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
NFPM := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
# Debian versions must start with a digit.
DEB_VERSION ?= 0.1.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo 0)
# Debian arch = dist/ name.
DEBS := amd64=amd64 arm64=arm64 armhf=armv7
# Gateway targets: name=GOOS/GOARCH/variant (GOARM for arm, GOMIPS for mips:
# router CPUs often have no FPU, hence softfloat).
CROSS := amd64=linux/amd64/ arm64=linux/arm64/ armv7=linux/arm/7 armv6=linux/arm/6 riscv64=linux/riscv64/ mipsle=linux/mipsle/softfloat

.PHONY: footprint all build demo test test-deps qemu-test deb-test package bench profile-w1 cross lint fuzz clean

all: build

# TAGS=broker compiles in the built-in MQTT broker (+0.5 MiB).
TAGS ?=

build:
	$(GOBUILD) -tags '$(TAGS)' -o bin/sluice ./agent
	$(GOBUILD) -o bin/firmware-sim ./firmware-sim

# The whole pipeline on embedded defaults: JetStream server, an MQTT broker
# (the agent's built-in one, run by the demo driver), the agent, firmware-sim,
# and a consumer printing envelopes.
demo: build
	rm -rf data/demo
	go run -tags broker ./tools/demo --sluice bin/sluice --sim bin/firmware-sim --config examples/demo.yaml

test-deps:
	@bash tools/test-deps.sh

test: test-deps
	go vet ./...
	go vet -tags broker ./...
	go test -count=1 -timeout 15m ./...
	CGO_ENABLED=0 go test -count=1 -buildmode=pie -run 'TestRelease' ./agent/exepages
	@# The whole agent as a PIE (some distributions' packaging builds one):
	@# it gives back its start-up pages but not the relocated ones.
	d=$$(mktemp -d) && CGO_ENABLED=0 go build -buildmode=pie -o $$d/sluice ./agent && $$d/sluice selftest && rm -rf $$d
	go test -count=1 -tags broker -run 'Builtin' ./agent
	bash tools/qemu-test.sh
	bash tools/deb-test.sh

# arm64, armv7 and mipsle binaries under qemu-user-static (installed when
# missing and root): version, validate every example, selftest; size budget.
qemu-test:
	bash tools/qemu-test.sh

bench: build test-deps
	go run ./tools/benchbuf
	go run ./tools/benchrules
	go run ./tools/benchml
	go run ./tools/benchuplink
	go run ./tools/bench --sluice bin/sluice --sim bin/firmware-sim
	go run ./tools/benchingest --sluice bin/sluice --sim bin/firmware-sim

# W1 at 5k msg/s with a CPU profile of the agent (a build with the pprof
# tag: release binaries carry no profiler), then its top entries.
profile-w1: build test-deps
	CGO_ENABLED=0 go build -tags pprof -o bin/sluice-pprof ./agent
	go run ./tools/bench --sluice bin/sluice-pprof --sim bin/firmware-sim --only 5k --repeat 1 --cpuprofile $(CURDIR)/bin/w1-5k.pprof
	go tool pprof -top -nodecount=30 bin/sluice-pprof bin/w1-5k.pprof

cross:
	@mkdir -p dist
	@set -e; for t in $(CROSS); do \
		name=$${t%%=*}; spec=$${t#*=}; os=$${spec%%/*}; rest=$${spec#*/}; arch=$${rest%%/*}; arm=$${rest#*/}; \
		for bin in sluice firmware-sim; do \
			pkg=./agent; [ $$bin = firmware-sim ] && pkg=./firmware-sim; \
			echo "dist/$$bin-$$os-$$name"; \
			GOOS=$$os GOARCH=$$arch GOARM=$$(echo $$arm | grep -x '[67]') GOMIPS=$$(echo $$arm | grep -x softfloat) \
				$(GOBUILD) -o dist/$$bin-$$os-$$name $$pkg; \
		done; \
	done
	cd dist && sha256sum sluice-* firmware-sim-* > SHA256SUMS

# .deb packages for amd64, arm64 and armhf in dist/.
package:
	@mkdir -p dist
	@set -e; for d in $(DEBS); do \
		arch=$${d%%=*}; name=$${d#*=}; \
		case $$name in armv7) goarch=arm; goarm=7;; *) goarch=$$name; goarm=;; esac; \
		GOOS=linux GOARCH=$$goarch GOARM=$$goarm $(GOBUILD) -o dist/sluice-linux-$$name ./agent; \
		sed -e "s|\$${ARCH}|$$arch|; s|\$${BIN}|dist/sluice-linux-$$name|; s|\$${DEB_VERSION}|$(DEB_VERSION)|" \
			deploy/nfpm.yaml > dist/nfpm-$$arch.yaml; \
		go run $(NFPM) package --config dist/nfpm-$$arch.yaml --packager deb --target dist/sluice_$(DEB_VERSION)_$$arch.deb; \
	done

# Installs the amd64 .deb with dpkg, runs sluice from it and removes it.
deb-test:
	bash tools/deb-test.sh

# What each dependency adds to the arm64 binary.
footprint:
	bash tools/footprint.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }
	go vet ./...
	go run $(STATICCHECK) ./...

# Short fuzz runs of every parser (the corpus grows in testdata/fuzz).
fuzz:
	go test ./agent/ingest/ -run '^$$' -fuzz FuzzJSONDecoder -fuzztime 30s
	go test ./agent/ingest/ -run '^$$' -fuzz FuzzQoS0Reader -fuzztime 30s
	go test ./agent/ingest/ -run '^$$' -fuzz FuzzFastNumber -fuzztime 30s
	go test ./rules/ -run '^$$' -fuzz FuzzCompileExpr -fuzztime 30s
	go test ./agent/config/ -run '^$$' -fuzz FuzzParse -fuzztime 30s
	go test ./firmware-sim/ -run '^$$' -fuzz FuzzReadPacket -fuzztime 30s

clean:
	rm -rf bin dist data

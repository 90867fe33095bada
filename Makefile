# dynia — see README.md. Targets are the public surface other parts rely on.
SHELL      := /bin/bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS    := -s -w -X github.com/dynia/dynia/internal/cli.Version=$(VERSION) \
              -X github.com/dynia/dynia/internal/cli.Commit=$(COMMIT) \
              -X main.version=$(VERSION)
export PATH := $(PATH):/root/go/bin:$(HOME)/go/bin
export CGO_ENABLED := 0
# Tests bring their own timeouts; this bounds the whole run (rule: < 20 min).
TEST_TIMEOUT ?= 18m

.PHONY: help deps deps-sandbox build test test-short soak fuzz fuzz-short lint bench image image-check sandbox sandbox-down clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## install everything the tests need (idempotent; root, Debian 12)
	@for s in hack/deps.d/*.sh; do echo "== $$s"; bash "$$s" || exit 1; done

# The sandbox needs the node packages, the S3 gateway, WireGuard, Docker and Pebble (a dockerd per
# droplet, docker-registry in the router), not Packer or test tools.
SANDBOX_DEPS := hack/deps.d/00-apt-update.sh hack/deps.d/10-node-packages.sh hack/deps.d/12-wireguard.sh hack/deps.d/15-sandbox.sh hack/deps.d/20-versitygw.sh hack/deps.d/50-docker.sh hack/deps.d/60-pebble.sh
deps-sandbox: ## install only what the sandbox needs
	@for s in $(SANDBOX_DEPS); do [ -e "$$s" ] || continue; echo "== $$s"; bash "$$s" || exit 1; done

build: ## build bin/dynia, bin/dynia-pull (static, version-stamped) and bin/dynia-demo-app (the sandbox's demo image binary)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dynia ./cmd/dynia
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dynia-pull ./cmd/dynia-pull
	$(GO) build -trimpath -ldflags '-s -w' -o bin/dynia-demo-app ./internal/demoimage/app

test: build ## unit + integration + end-to-end tests (integration needs root and `make deps`), then fuzz-short
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	DYNIA_BIN_DIR=$(CURDIR)/bin $(GO) test -p 2 -timeout $(TEST_TIMEOUT) -count=1 ./...
	$(MAKE) --no-print-directory fuzz-short

# Fuzz targets (package:Target). `go test` runs each one's seed corpus
# (testdata/fuzz/<Target>/ in the package) as a plain test; fuzz-short
# fuzzes each for a fixed number of inputs, one after another (about 10 s
# each on 2 idle cores, ~80 s in `make test`); `make fuzz` runs them for
# FUZZ_LONG each. Counts, not durations: Go 1.26's fuzz coordinator can
# report its own -fuzztime deadline as a failure ("context deadline
# exceeded", no failing input) when a loaded machine slows its workers
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
# A failing input is written to the package's testdata/fuzz/<Target>/:
# commit it with the fix, as a regression seed. New interesting inputs are
# minimized for at most FUZZMINIMIZETIME (go test's default, 60 s, would
# eat a short run).
FUZZ_TARGETS := internal/cluster:FuzzDecodeState:10000 internal/nodeconfig:FuzzNodeConfig:100000 \
                internal/report:FuzzDecodeStatus:20000 internal/metadata:FuzzMetadata:40000 \
                internal/render:FuzzRender:5000 internal/cli:FuzzFlags:6000 internal/signing:FuzzOpen:40000
# FUZZTIME, when set (10s, 5m, 20000x), replaces every target's count.
FUZZTIME ?=
FUZZMINIMIZETIME ?= 1s
FUZZ_LONG ?= 5m

fuzz-short: ## each fuzz target for its count of inputs (or FUZZTIME), sequentially
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}x; \
	  ft=$(FUZZTIME); ft=$${ft:-$$n}; echo "== $$fn ($$pkg, $$ft)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$ft -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg || exit 1; \
	done

fuzz: ## each fuzz target for FUZZ_LONG (default 5m)
	$(MAKE) --no-print-directory fuzz-short FUZZTIME=$(FUZZ_LONG) FUZZMINIMIZETIME=30s

test-short: ## unit tests only (seconds)
	$(GO) test -short -count=1 ./...

# The fault suite's long forms (docs/reliability.md, "The fault suite"):
# a 60 s bucket outage, 5 minutes of process chaos asserting >= 99.5 %
# availability, 60 s partitions. About 20 minutes on 2 cores; run alone.
SOAK_TESTS ?= TestStoreFaults|TestProcessChaos|TestPartitions
soak: build ## the fault suite's long forms (root, `make deps`; ~20 min)
	DYNIA_SOAK=1 DYNIA_REQUIRE_INTEGRATION=1 DYNIA_BIN_DIR=$(CURDIR)/bin \
	  $(GO) test -count=1 -timeout 40m -v -run '^($(SOAK_TESTS))$$' ./e2e/

lint: ## golangci-lint (pinned in tools/go.mod), go vet, gofmt, go mod tidy
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) mod tidy -diff
	@test -x bin/golangci-lint || (cd tools && $(GO) build -o ../bin/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint)
	bin/golangci-lint run --config .golangci.yml ./...

# Knobs, the time each benchmark takes and an hour-long setting: bench/notes.md ("Running");
# `bin/dynia-bench plan` prints the estimate for the knobs given. The bench package's own test
# (TestSmoke, ~30 s) runs in `make test`.
bench: build ## every benchmark in sandboxes (root, ~1 h 50 min on 2 cores): docs/benchmarks.md, bench/results/<run>/ (BENCH_RUNS, BENCH_RELOADS, BENCH_ONLY, BENCH_QUICK=1, …)
	$(GO) build -o bin/dynia-bench ./cmd/dynia-bench
	DYNIA_BIN_DIR=$(CURDIR)/bin bin/dynia-bench

image: build ## build the node snapshot on DigitalOcean (needs DIGITALOCEAN_TOKEN)
	bash hack/image-build.sh

image-check: build ## packer fmt/validate + provisioning run in a debootstrap root
	bash hack/image-check.sh

sandbox: ## install, build, bring up the local sandbox and run the demo cluster
	bash hack/sandbox.sh

sandbox-down: ## tear the local sandbox down
	bin/dynia sandbox down

clean:
	rm -rf bin

# Racklet rack control plane. `make help` lists the targets.
GO        ?= go
BIN       ?= bin
# Bounded fuzzing per target in `make test` (CI); raise it locally: make fuzz FUZZTIME=5m
FUZZTIME  ?= 10s
# Chaos run length for `make chaos`; CI runs a short one inside `make test`.
CHAOS_DURATION ?= 10m
SEED      ?= 0
# Where `make bench` collects the benchmarks' figures before the table.
BENCH_OUT ?= /tmp/racklet-bench

.PHONY: help build test unit fuzz run lint bench chaos clean initramfs

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build rackd and rackctl into ./bin
	$(GO) build -o $(BIN)/ ./cmd/rackd ./cmd/rackctl

# The boot environment (bootstrap/): racklet-init as /init of a u-root initramfs.
# INITRAMFS_ARCH=arm64 for a Raspberry Pi (default: the host's); the trust anchors
# and configuration go in with BOOTSTRAP_CA=ca.crt BOOTSTRAP_KEYS="a.pub b.pub"
# BOOTSTRAP_CONFIG=bootstrap.json (see docs/architecture.md, "Boot environment").
INITRAMFS ?= $(BIN)/initramfs.cpio
initramfs: ## build the boot environment's initramfs with u-root into bin/initramfs.cpio
	$(GO) run ./bootstrap/cmd/racklet-initramfs -o $(INITRAMFS) -arch "$(INITRAMFS_ARCH)" \
	  -ca "$(BOOTSTRAP_CA)" -keys "$(BOOTSTRAP_KEYS)" -config "$(BOOTSTRAP_CONFIG)"

test: lint unit fuzz ## everything CI runs: lint, unit/integration tests with -race, bounded fuzzing

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x $$pkg; \
	  done; \
	done

run: ## start a simulated rack with its 3-member control plane (rackd dev)
	$(GO) run ./cmd/rackd dev

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: ## benchmarks, then one table and benchmarks/results/latest.json (benchmarks/README.md; about 20 min)
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	RACKLET_BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^Benchmark(Baseline|Append|LogAppend|FanOut)' -benchtime 2000x -timeout 30m ./benchmarks/
	RACKLET_BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^BenchmarkReconcileLatency' -benchtime 1000x -timeout 60m ./benchmarks/
	RACKLET_BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^BenchmarkFailover' -benchtime 20x -timeout 60m ./benchmarks/
	RACKLET_BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^BenchmarkRackdResources' -benchtime 1x -timeout 10m ./benchmarks/
	$(GO) run ./benchmarks/cmd/benchtable -in $(BENCH_OUT) -out benchmarks/results/latest.json

chaos: ## a long seeded chaos run (CHAOS_DURATION, SEED=0 picks one and prints it)
	RACKLET_CHAOS_DURATION=$(CHAOS_DURATION) RACKLET_CHAOS_SEED=$(SEED) $(GO) test -race -count=1 -timeout 0 -run 'TestChaos' -v ./sim/...

clean:
	rm -rf $(BIN)

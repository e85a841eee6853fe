# replicar build and test entry points. `make test` is the README's test
# command and what .ci/run calls.

GO        ?= go
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBIN     := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):/usr/sbin:$(PATH)

# Short fuzz runs inside `make test`; `make fuzz` runs longer ones.
TEST_FUZZTIME ?= 10s
FUZZTIME      ?= 2m
TEST_TIMEOUT  ?= 12m

.PHONY: all build test unit lint fuzz bench bench-resp bench-repl bench-mysql deps run stop clean failover-bench

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/replicar ./cmd/replicar

deps:
	bash scripts/install-deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Everything CI runs: lint, the whole suite with the race detector (real
# redis-server, mariadbd and nats-server included), and brief fuzzing. It
# first installs the servers that are missing (deps: a tenth of a second
# when they are all there), so it is whole on a fresh machine by itself.
test: deps lint build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	FUZZTIME=$(TEST_FUZZTIME) bash scripts/fuzz.sh

# The pure cores alone: seconds, no servers.
unit:
	$(GO) test -count=1 ./backlog/... ./ackpolicy/... ./internal/...

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./backlog/... ./ackpolicy/... ./protocols/resp/...

# The main job on this machine: install what is missing, build, start a
# local 3-node group of real processes under .run/group, kill its leader
# and show the failover (examples/demo, see README). The group stays up;
# `make stop` stops it. DEMO_FLAGS passes flags, e.g. DEMO_FLAGS="-policy all".
DEMO_FLAGS ?=
run:
	bash scripts/run-local.sh $(DEMO_FLAGS)

stop:
	bash scripts/run-local.sh stop

# redis-benchmark directly against redis-server and through replicar, in one
# run, with the ratios.
bench-resp: build
	bash bench/resp.sh

# SET throughput and latency: direct, native replication, native WAIT 1, the
# native setups through bench/relay (the floor of any proxy), and a three-node
# replicar group (the binary) under leader, one and all, in one run, with the
# clients in a process of their own.
bench-repl: build
	$(GO) build -o bin/relay ./bench/relay
	$(GO) run ./bench/replbench -relay bin/relay

# sysbench oltp_insert and oltp_write_only (16 threads): direct mariadbd,
# native async replication, native semi-sync (AFTER_SYNC), both again through
# bench/relay (the floor of any proxy), and a three-node replicar group (REPLICAR_PROTOCOL=mysql) under leader, one and all, in
# one run, with the ratios. MYSQLBENCH_FLAGS passes flags, e.g.
# MYSQLBENCH_FLAGS="-time 60s -rounds 3 -sync-binlog 0".
MYSQLBENCH_FLAGS ?=
bench-mysql: build
	$(GO) build -o bin/relay ./bench/relay
	$(GO) run ./bench/mysqlbench $(MYSQLBENCH_FLAGS)

clean:
	rm -rf bin .run

# Leader SIGKILL → writes back, over KILLS kills (default 20), through a
# router: p50 and max write unavailability, and no acknowledged write lost.
# TTL defaults to REPLICAR_LEASE_TTL's own default. The test's output is
# kept whole in a file so the exit status is the test's, not grep's, and a
# failure's reason is printed with the kills.
KILLS ?= 20
TTL   ?= 3s
failover-bench: build
	@out=$$(mktemp); status=0; \
	REPLICAR_FAILOVER_KILLS=$(KILLS) REPLICAR_FAILOVER_TTL=$(TTL) $(GO) test -count=1 -v -timeout 30m -run '^TestFailoverUnavailability$$' ./test/ >$$out 2>&1 || status=$$?; \
	grep -E 'failover_test\.go:[0-9]+:|^(--- |ok|FAIL|panic)' $$out; \
	[ $$status -eq 0 ] || echo "failover-bench failed (exit $$status); the whole output is in $$out"; \
	[ $$status -ne 0 ] || rm -f $$out; exit $$status

# The fault-injection verification suite (test/verify) for DURATION per ack
# policy (all with MIN_INSYNC=2, quorum, leader): kills, pauses and
# partitions under a register and an append workload, then linearizability
# and lost-write checks. VERIFY_OUT keeps every run's report, timeline, node
# logs and, for a non-linearizable history, the porcupine visualization.
# `make test` runs a short schedule of the same (TestVerifyShort).
.PHONY: chaos
DURATION      ?= 5m
CHAOS_TIMEOUT ?= 4h
VERIFY_OUT    ?= $(CURDIR)/.run/chaos
chaos: build
	REPLICAR_CHAOS_DURATION=$(DURATION) REPLICAR_VERIFY_OUT=$(VERIFY_OUT) \
		$(GO) test -count=1 -v -timeout $(CHAOS_TIMEOUT) -run '^TestChaos$$' ./test/verify/

# The same for MySQL groups (3 mariadbd, REPLICAR_PROTOCOL=mysql): bank
# transfers and unique-id appends under all (MIN_INSYNC=2) and quorum while
# the test/verify nemesis deals random faults for DURATION per policy; fails
# on a lost acknowledged insert, a wrong bank total or differing backends.
# `make test` runs a fixed schedule of faults (TestMySQLVerifyShort).
.PHONY: chaos-mysql
chaos-mysql: build
	REPLICAR_CHAOS_DURATION=$(DURATION) \
		$(GO) test -count=1 -v -timeout $(CHAOS_TIMEOUT) -run '^TestMySQLChaos$$' ./test/

# Redis's own Tcl test suite (the installed redis-server's version, fetched
# into .cache/redis-src) in external mode, directly and through replicar;
# fails on a test that passes directly but not through the proxy, unless
# scripts/redis-testsuite.allow says why. UNITS=… runs some units only.
# See docs/REDIS-TESTSUITE.md.
.PHONY: redis-testsuite
redis-testsuite:
	bash scripts/redis-testsuite.sh

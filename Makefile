# holdfast — see README.md.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DATA_DIR ?= holdfast-data

.PHONY: build test test-unit chaos verify demo deps ui-deps ui bench bench-proxy bench-buffer bench-api bench-compound clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/holdfast ./cmd/holdfast

deps:
	./scripts/install-deps.sh

# Node.js, Debian's chromium and the dashboard's npm packages (browser test, UI build).
ui-deps:
	./scripts/install-ui-deps.sh

# Rebuilds the dashboard bundle (internal/web/dist, embedded in the binary) from internal/web/ui.
ui: ui-deps
	cd internal/web/ui && npm run build

# The whole suite: unit, table and integration tests against real PostgreSQL
# and embedded etcd, with the race detector, and the dashboard in a browser.
test: deps ui-deps
	$(GO) test -race -count=1 -timeout 30m ./...

# The unit tier: decision tables, decoders, fuzz seeds, embedded etcd and
# NATS; every test that starts PostgreSQL or a cluster is skipped (-short).
test-unit:
	$(GO) test -short -count=1 ./...

# The chaos soak: TestChaos (which make test runs with 100 faults of the
# soaked kinds) with 300 randomized compound faults of every loopback kind on
# a three-member cluster, every acknowledged write and read reconciled
# (docs/chaos.md). CHAOS_SEED replays; CHAOS_FAULTS sets the count,
# CHAOS_KINDS the faults.
CHAOS_FAULTS ?= 300
CHAOS_KINDS ?= all
chaos: deps
	CHAOS_FAULTS=$(CHAOS_FAULTS) CHAOS_KINDS=$(CHAOS_KINDS) $(GO) test -race -count=1 -timeout 90m -run TestChaos -v ./internal/supervisor

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

verify:
	@fmt=$$(gofmt -l cmd internal bench); if [[ -n "$$fmt" ]]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

demo: deps build
	./bin/holdfast up --data-dir $(DATA_DIR)

bench: deps build
	./bench/failover.sh

# pgbench direct, through holdfast's proxy and through PgBouncer; idle-client
# memory; the stall clients see when the primary is killed (installs PgBouncer).
bench-proxy: deps
	./bench/proxy.sh

# durable write buffer: HTTP ingest against fsync-per-write JetStream, drain into PostgreSQL.
bench-buffer: deps
	./bench/buffer.sh

# ToDo API through holdfast up: GET by id, POST direct and buffered.
bench-api: deps
	./bench/api.sh

# faults back to back (kill -9, SIGSTOP of the primary every 4 s) under buffer and proxy load,
# every acknowledged write reconciled; drain after the faults against a steady drain.
bench-compound: deps
	./bench/compound.sh

clean:
	rm -rf bin

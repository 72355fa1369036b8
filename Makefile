SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Test services: a local Kafka broker and ClickHouse server run by .ci/*.sh on loopback.
export KAFKA_PORT ?= 19092
export CLICKHOUSE_PORT ?= 19000
export IMMETER_RUN_DIR ?= $(CURDIR)/.run
# Embedded ClickHouse engines (24.8, 26.9) that schemas/sql_test.go runs every statement on.
export CHDB_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/immeter/chdb

# staticcheck for `make lint`, pinned (2026.2.2 supports Go 1.26); installed once into the cache.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/immeter/bin/staticcheck-$(STATICCHECK_VERSION)/staticcheck

# Recipes that need the services run under .ci/services.sh: it uses KAFKA_BROKERS and
# CLICKHOUSE_ADDR when set, else starts what does not answer on the ports above, and on
# exit (success, failure or Ctrl-C) stops only what it started.

.PHONY: build test test-body test-race test-cluster test-cluster-body check-ops run bench bench-body bench-accuracy services-up services-down fmt vet lint clean

build:
	go build -o bin/immeter ./cmd/immeter

# Unit and integration tests against the real services; every SQL statement also runs on
# the embedded ClickHouse 24.8 and 26.9 that .ci/chdb.sh installs (pip, into CHDB_DIR).
# Every benchmark runs once too (-benchtime 1x, a few seconds), so that `make bench` keeps working.
test: check-ops
	@.ci/services.sh kafka clickhouse -- $(MAKE) --no-print-directory test-body

# test's work, once the services are up.
test-body:
	@export IMMETER_INTEGRATION=1; \
	echo "+ go vet ./..."; go vet ./...; \
	.ci/chdb.sh install; \
	.ci/chromium.sh install; \
	mkdir -p .run; \
	echo "+ go test -count=1 -timeout 15m -v -bench . -benchtime 1x ./... (full log: .run/test.log)"; \
	rc=0; go test -count=1 -timeout 15m -v -bench . -benchtime 1x ./... > .run/test.log 2>&1 || rc=$$?; \
	grep -E '^(--- FAIL|FAIL|ok|panic)|^\s+\S+_test\.go:[0-9]+:' .run/test.log || true; \
	echo "test: $$(grep -c -- '--- PASS' .run/test.log) passed, $$(grep -c -- '--- FAIL' .run/test.log) failed, $$(grep -c -- '--- SKIP' .run/test.log) skipped"; \
	exit $$rc

# The tests that need no services, under the race detector: integration tests skip
# (IMMETER_INTEGRATION, KAFKA_BROKERS and CLICKHOUSE_ADDR unset), -short skips long runs.
test-race:
	@mkdir -p .run; \
	echo "+ go test -race -short -count=1 -timeout 10m -v ./... (full log: .run/test-race.log)"; \
	rc=0; env -u IMMETER_INTEGRATION -u KAFKA_BROKERS -u CLICKHOUSE_ADDR \
		go test -race -short -count=1 -timeout 10m -v ./... > .run/test-race.log 2>&1 || rc=$$?; \
	grep -E '^(--- FAIL|FAIL|ok|panic|WARNING: DATA RACE)|^\s+\S+_test\.go:[0-9]+:' .run/test-race.log || true; \
	echo "test-race: $$(grep -c -- '--- PASS' .run/test-race.log) passed, $$(grep -c -- '--- FAIL' .run/test-race.log) failed, $$(grep -c -- '--- SKIP' .run/test-race.log) skipped"; \
	exit $$rc

# Prometheus configuration and alerting rules checked by promtool (.ci/promtool.sh installs
# it when missing), the Grafana dashboard and docker-compose.yml by Go tests.
check-ops:
	.ci/promtool.sh
	go test -count=1 -run 'TestDashboardMetricsExist|TestAlertRules|TestComposeStack' ./telemetry

# The replicated setup (.ci/cluster.sh: ZooKeeper, two ClickHouse replicas, three
# Kafka brokers, on private ports) and its fault test, with the single-node services
# beside it for the comparison run. Stops what it started.
test-cluster:
	@.ci/services.sh kafka clickhouse cluster -- $(MAKE) --no-print-directory test-cluster-body

# test-cluster's work, once the services and the cluster are up.
test-cluster-body:
	@export IMMETER_INTEGRATION=1 \
		CLUSTER_KAFKA_BROKERS=$$(.ci/cluster.sh env | sed -n 's/^KAFKA_BROKERS=//p') \
		CLUSTER_CLICKHOUSE_ADDR=$$(.ci/cluster.sh env | sed -n 's/^CLICKHOUSE_ADDR=//p') \
		CLICKHOUSE_CLUSTER=$$(.ci/cluster.sh env | sed -n 's/^CLICKHOUSE_CLUSTER=//p'); \
	mkdir -p .run; \
	echo "+ go test -p 1 -count=1 -timeout 20m -v -run 'TestCluster' ./schemas/ ./cmd/immeter/ ./aggregate/ (full log: .run/test-cluster.log)"; \
	rc=0; go test -p 1 -count=1 -timeout 20m -v -run 'TestCluster' ./schemas/ ./cmd/immeter/ ./aggregate/ > .run/test-cluster.log 2>&1 || rc=$$?; \
	grep -E '^(--- |FAIL|ok|panic)|^\s+\S+_test\.go:[0-9]+:' .run/test-cluster.log || true; \
	exit $$rc

# All-in-one pipeline with simulated traffic; uses an embedded Kafka broker unless
# KAFKA_BROKERS is set. Ctrl-C stops the binary and the ClickHouse it started.
run: build
	@.ci/services.sh clickhouse -- bin/immeter run --simulate

# Benchmarks (BENCHMARKS.md): the Go benchmarks, 5 runs each, into
# .run/bench/latest.txt (compare runs with benchstat:
# go install golang.org/x/perf/cmd/benchstat@latest; benchstat old.txt .run/bench/latest.txt),
# then the end-to-end benchmark (`immeter bench` on private topics and a private
# database) into .run/bench/e2e-latest.txt. BENCH_E2E_FLAGS passes flags to it,
# e.g. BENCH_E2E_FLAGS='--sustain 5m' for the 5-minute sustained run.
BENCH_E2E_FLAGS ?=
bench: build
	@mkdir -p .run/bench
	@.ci/services.sh kafka clickhouse -- $(MAKE) --no-print-directory bench-body
	@echo "bench: results in .run/bench/latest.txt and .run/bench/e2e-latest.txt"

# bench's work, once the services are up.
bench-body:
	@export IMMETER_INTEGRATION=1; \
	go test -run '^$$' -bench . -benchmem -count 5 -timeout 60m ./... | tee .run/bench/latest.txt; \
	bin/immeter bench --run-dir .run/bench $(BENCH_E2E_FLAGS) | tee .run/bench/e2e-latest.txt

# The MAU estimate's accuracy table: 100 seeded trials at 1k to 10M users (about 3 minutes).
bench-accuracy:
	@mkdir -p .run/bench
	IMMETER_ACCURACY=1 go test -run TestMAUAccuracy -v -timeout 30m ./aggregate/ | tee .run/bench/accuracy.txt

services-up:
	.ci/kafka.sh start
	.ci/clickhouse.sh start

services-down:
	.ci/kafka.sh stop
	.ci/clickhouse.sh stop

fmt:
	gofmt -s -w .

vet:
	go vet ./...

# go vet, staticcheck and gofmt; fails on any finding.
lint: $(STATICCHECK)
	go vet ./...
	$(STATICCHECK) ./...
	@out=$$(gofmt -s -l $$(go list -f '{{.Dir}}' ./...)); if [ -n "$$out" ]; then echo "gofmt -s -l: not formatted (make fmt):"; echo "$$out"; exit 1; fi

$(STATICCHECK):
	GOBIN=$(@D) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean: services-down
	rm -rf bin .run

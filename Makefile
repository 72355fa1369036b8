SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Test services: a local Kafka broker and ClickHouse server run by .ci/*.sh on loopback.
export KAFKA_PORT ?= 19092
export CLICKHOUSE_PORT ?= 19000
export IMMETER_RUN_DIR ?= $(CURDIR)/.run

# Shell prelude for recipes that need the services. `use NAME VAR ADDR` leaves VAR alone
# if it is set; otherwise it exports VAR=ADDR and starts .ci/NAME.sh unless something
# already answers there. On exit (success, failure or Ctrl-C) it stops only what it started.
SERVICES = started=; \
	trap 'for s in $$started; do .ci/$$s.sh stop; done' EXIT; \
	trap 'exit 130' INT TERM; \
	use() { \
		if [ -n "$${!2:-}" ]; then echo "$$1: using $$2=$${!2}"; return; fi; \
		export "$$2=$$3"; \
		if .ci/$$1.sh status >/dev/null; then echo "$$1: using running instance at $$3"; \
		else started="$$1 $$started"; .ci/$$1.sh start; fi; \
	};
USE_KAFKA = use kafka KAFKA_BROKERS 127.0.0.1:$(KAFKA_PORT)
USE_CLICKHOUSE = use clickhouse CLICKHOUSE_ADDR 127.0.0.1:$(CLICKHOUSE_PORT)

.PHONY: build test run bench services-up services-down fmt vet clean

build:
	go build -o bin/immeter ./cmd/immeter

# Unit and integration tests against the real services.
test:
	@$(SERVICES) $(USE_KAFKA); $(USE_CLICKHOUSE); \
	export IMMETER_INTEGRATION=1; \
	echo "+ go vet ./..."; go vet ./...; \
	echo "+ go test -count=1 -timeout 15m ./..."; go test -count=1 -timeout 15m ./...

# All-in-one pipeline with simulated traffic; uses an embedded Kafka broker unless
# KAFKA_BROKERS is set. Ctrl-C stops the binary and the ClickHouse it started.
run: build
	@$(SERVICES) $(USE_CLICKHOUSE); \
	bin/immeter run --simulate

# Benchmarks, including the end-to-end one. Compare runs with benchstat
# (go install golang.org/x/perf/cmd/benchstat@latest; benchstat old.txt .run/bench/latest.txt).
bench:
	@mkdir -p .run/bench
	@$(SERVICES) $(USE_KAFKA); $(USE_CLICKHOUSE); \
	export IMMETER_INTEGRATION=1; \
	go test -run '^$$' -bench . -benchmem -count 5 ./... | tee .run/bench/latest.txt
	@echo "bench: results in .run/bench/latest.txt; compare with: benchstat old.txt .run/bench/latest.txt"

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

clean: services-down
	rm -rf bin .run

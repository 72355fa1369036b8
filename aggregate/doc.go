// Package aggregate folds usage events from Kafka into ClickHouse rollups,
// exactly once: daily counters, exact login users, HyperLogLog sketches and
// plan changes, with duplicates and invalid events kept out.
package aggregate

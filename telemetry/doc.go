// Package telemetry serves immeter's Prometheus metrics and health checks and counts the errors of its ClickHouse and Kafka clients.
package telemetry

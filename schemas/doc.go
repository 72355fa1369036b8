// Package schemas holds immeter's contracts: the usage event and billing
// record formats (JSON Schema files and their Go types) and the versioned
// ClickHouse migrations.
package schemas

// Package rollup prices each app's calendar month from the ClickHouse
// rollups and publishes billing records: provisional, final and corrections.
package rollup

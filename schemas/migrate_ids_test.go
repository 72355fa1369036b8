package schemas

import (
	"fmt"
	"strings"
	"testing"
)

// Rows of event_ids in a database migrated long ago: 150 days (more than
// current releases take in one insert block by default), several source
// partitions and apps.
const (
	sqlTestOldIDs = `INSERT INTO event_ids (src_partition, app, day, id_hi, id_lo, src_offset)
		SELECT toInt32(number % 4), toUInt32(1400000000 + number % 7), toDate('2026-01-01') + number % 150,
			number * 7919, number, number * 3 FROM system.numbers LIMIT 3000`
	sqlTestIDRows = `SELECT DISTINCT src_partition, app, day, id_hi, id_lo, src_offset FROM event_ids
		ORDER BY src_partition, app, day, id_hi, id_lo, src_offset`
	sqlTestIDTables = `SELECT name, partition_key FROM system.tables
		WHERE database = currentDatabase() AND name LIKE 'event_ids%' ORDER BY name`
)

// TestMigrationEventIDsByDay: migration 0016 carries every row of a
// database migrated long ago over into event_ids partitioned by day, on
// every engine; on the server, Migrate also finishes it when it was cut
// short after the copy or after the rename (it is applied again: the
// rename must not run twice).
func TestMigrationEventIDsByDay(t *testing.T) {
	upgrade{
		version: 16, statements: 5, // create, copy, rename, drop, drop
		cuts: []int{0, 1, 2, 3, 4},
		before: func(run runner, e engine) []string {
			run(e, "old ids", sqlTestOldIDs)
			want := run(e, "ids before", sqlTestIDRows).rows
			if len(want) != 3000 {
				t.Fatalf("%s: %d ids before the migration; want 3000", e.name(), len(want))
			}
			return want
		},
		check: func(run runner, e engine, what string, want []string) {
			t.Helper()
			if got := run(e, "ids after", sqlTestIDRows).rows; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: %s: the ids differ after 0016 (%d rows; want %d)", e.name(), what, len(got), len(want))
			}
			tables := strings.Join(run(e, "tables", sqlTestIDTables).rows, "\n")
			if tables != "event_ids\ttoYYYYMMDD(day)" {
				t.Errorf("%s: %s: event_ids tables after 0016:\n%s\nwant only event_ids partitioned by toYYYYMMDD(day)", e.name(), what, tables)
			}
			var parts uint64
			if r := run(e, "partitions", "SELECT uniqExact(partition) FROM system.parts WHERE database = currentDatabase() AND table = 'event_ids' AND active"); len(r.rows) == 1 {
				fmt.Sscan(r.rows[0], &parts)
			}
			if parts != 150 {
				t.Errorf("%s: %s: event_ids has %d partitions; want 150 (one a day)", e.name(), what, parts)
			}
		},
	}.test(t)
}

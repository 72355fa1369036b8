package schemas

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
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
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var m16 Migration
	for _, m := range ms {
		if m.Version == 16 {
			m16 = m
		}
	}
	if len(m16.Statements) != 5 {
		t.Fatalf("0016: %d statements; this test knows 5 (create, copy, rename, drop, drop)", len(m16.Statements))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	create := stmt{key: "schemas.sqlCreateDatabase", text: fmt.Sprintf(sqlCreateDatabase, sqlTestDB)}
	for _, e := range sqlEngines(ctx, t, create) {
		run := func(e engine, key, text string, rows ...[]any) *result {
			t.Helper()
			r, err := e.run(ctx, stmt{key: key, text: text, sample: sample{rows: rows}})
			if err != nil {
				t.Fatalf("%s: %s: %v", e.name(), key, err)
			}
			return r
		}
		// old makes the database as migrations before 0016 left it, with ids.
		old := func(e engine) []string {
			run(e, "schema_migrations", sqlCreateMigrations)
			for _, m := range ms {
				if m.Version >= 16 {
					break
				}
				for i, s := range m.Statements {
					run(e, fmt.Sprintf("migration %04d #%d", m.Version, i+1), s)
				}
				run(e, "record", sqlInsertMigration, []any{uint32(m.Version), m.Name, at("2026-10-01 00:00:01")})
			}
			run(e, "old ids", sqlTestOldIDs)
			want := run(e, "ids before", sqlTestIDRows).rows
			if len(want) != 3000 {
				t.Fatalf("%s: %d ids before the migration; want 3000", e.name(), len(want))
			}
			return want
		}
		check := func(e engine, what string, want []string) {
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
		}
		srv, ok := e.(*server)
		if !ok { // chdb: the statements of 0016 as Migrate sends them on a fresh start
			want := old(e)
			for i, s := range m16.Statements {
				run(e, fmt.Sprintf("migration 0016 #%d", i+1), s)
			}
			check(e, "migrated", want)
			run(e, "drop", "DROP DATABASE "+sqlTestDB)
			continue
		}
		// The server: Migrate, from a whole run and from runs cut short.
		for _, cut := range []int{0, 1, 2, 3, 4} {
			db := fmt.Sprintf("%s_ids%d", sqlTestDB, cut)
			if err := srv.boot.Exec(ctx, fmt.Sprintf(sqlCreateDatabase, db)); err != nil {
				t.Fatal(err)
			}
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{os.Getenv("CLICKHOUSE_ADDR")},
				Auth: clickhouse.Auth{Database: db}})
			if err != nil {
				t.Fatal(err)
			}
			dbe := &server{version: srv.version, boot: srv.boot, conn: conn}
			want := old(dbe)
			for i := 0; i < cut; i++ { // the statements a cut run sent
				run(dbe, fmt.Sprintf("migration 0016 #%d", i+1), m16.Statements[i])
			}
			if err := Migrate(ctx, conn); err != nil {
				t.Fatalf("%s: Migrate after %d statements of 0016: %v", e.name(), cut, err)
			}
			check(dbe, fmt.Sprintf("cut after %d statements", cut), want)
			if err := Migrate(ctx, conn); err != nil { // recorded: nothing runs
				t.Errorf("%s: Migrate again: %v", e.name(), err)
			}
			_ = srv.boot.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	}
}

package main

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// otherMonthRows is how many records of another month the migrated database
// holds: more than two granules (index_granularity 8192).
const otherMonthRows = 20000

// testConsoleListMigrated checks the app list of a database migrated before
// 0015_billing_by_month: its billing records stored, then 0015 applied, it
// lists the same apps with the same figures as the database the rollup
// wrote; and the list reads only the month's rows, not the records of
// every month (billing_records, ordered by app first, would be read whole).
func testConsoleListMigrated(ctx context.Context, t *testing.T, ce *consoleEnv) {
	env := ce.env
	db := env.ch.Database + "_pre15"
	if err := env.conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: env.ch.Addrs(),
		Auth: clickhouse.Auth{Database: db, Username: env.ch.Username, Password: env.ch.Password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = env.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		} else {
			t.Logf("kept ClickHouse database %s for inspection", db)
		}
		conn.Close()
	})
	// The schema as it was before 0015, without a record of the versions:
	// Migrate applies them again, every statement being idempotent.
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 15 {
			continue
		}
		for _, s := range m.Statements {
			if err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("migration %04d_%s: %v", m.Version, m.Name, err)
			}
		}
	}
	// The records the rollup stored (no usage: the list comes from the
	// records alone), and many of an earlier month.
	if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO billing_records SELECT * FROM %s.billing_records", env.ch.Database)); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO billing_records
		(app, month, revision, status, supersedes, edition, mau, total, currency, fingerprint, record, generated_at)
		SELECT toUInt32(number), '2020-01', toUInt32(1), 'final', toUInt32(0), 'developer', toUInt64(0),
			toDecimal64(0, 2), 'USD', '', '{}', toDateTime('2020-02-01 00:00:00') FROM system.numbers LIMIT %d`, otherMonthRows)); err != nil {
		t.Fatal(err)
	}
	if err := schemas.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}

	for _, m := range []schemas.Month{{Year: 2026, Month: time.October}, {Year: 2026, Month: time.November}} {
		want, err := rollup.ReadApps(ctx, env.conn, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 3 || want[0].Revision == 0 {
			t.Fatalf("%s: the rollup's database lists %+v; want 3 apps with records", m, want)
		}
		var read uint64
		pctx := clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { read += p.Rows }))
		got, err := rollup.ReadApps(pctx, conn, m)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: migrated database lists\n%+v\nwant\n%+v", m, got, want)
		}
		// The month's rows are at most two granules; the whole table is
		// more than otherMonthRows.
		t.Logf("%s: list read %d rows of %d stored", m, read, otherMonthRows+6)
		if read == 0 || read > 2*8192 {
			t.Errorf("%s: list read %d rows; want the month's granules only (at most %d)", m, read, 2*8192)
		}
	}
}

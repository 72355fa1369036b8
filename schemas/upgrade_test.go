package schemas

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// runner runs a statement (with sample rows) on an engine, failing the
// test on an error.
type runner func(e engine, key, text string, rows ...[]any) *result

// upgrade is a test of one migration on a database the migrations before
// it left: on every engine, the migration's statements as Migrate sends
// them; on the server, Migrate itself, from a whole run and from runs cut
// short after each count of statements in cuts (the migration applied
// again must finish, not fail).
type upgrade struct {
	version    int
	statements int   // how many the test knows the migration to have
	cuts       []int // statements run before a cut, on the server
	// before fills a database migrated up to the version, and returns
	// what check compares with.
	before func(run runner, e engine) []string
	// check checks the database after the migration; what says which run.
	check func(run runner, e engine, what string, want []string)
}

func (u upgrade) test(t *testing.T) {
	t.Helper()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var m Migration
	for _, x := range ms {
		if x.Version == u.version {
			m = x
		}
	}
	if len(m.Statements) != u.statements {
		t.Fatalf("%04d: %d statements; this test knows %d", u.version, len(m.Statements), u.statements)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(e engine, key, text string, rows ...[]any) *result {
		t.Helper()
		r, err := e.run(ctx, stmt{key: key, text: text, sample: sample{rows: rows}})
		if err != nil {
			t.Fatalf("%s: %s: %v", e.name(), key, err)
		}
		return r
	}
	old := func(e engine) []string {
		run(e, "schema_migrations", sqlCreateMigrations)
		for _, x := range ms {
			if x.Version >= u.version {
				break
			}
			for i, s := range x.Statements {
				run(e, fmt.Sprintf("migration %04d #%d", x.Version, i+1), s)
			}
			run(e, "record", sqlInsertMigration, []any{uint32(x.Version), x.Name, at("2026-10-01 00:00:01")})
		}
		return u.before(run, e)
	}
	statements := func(e engine, n int) {
		for i, s := range m.Statements[:n] {
			run(e, fmt.Sprintf("migration %04d #%d", u.version, i+1), s)
		}
	}
	create := stmt{key: "schemas.sqlCreateDatabase", text: fmt.Sprintf(sqlCreateDatabase, sqlTestDB)}
	for _, e := range sqlEngines(ctx, t, create) {
		srv, ok := e.(*server)
		if !ok { // chdb: the statements as Migrate sends them on a fresh start
			want := old(e)
			statements(e, len(m.Statements))
			u.check(run, e, "migrated", want)
			run(e, "drop", "DROP DATABASE "+sqlTestDB)
			continue
		}
		for _, cut := range u.cuts {
			db := fmt.Sprintf("%s_m%d_%d", sqlTestDB, u.version, cut)
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
			statements(dbe, cut) // what a run cut short sent
			if err := Migrate(ctx, conn); err != nil {
				t.Fatalf("%s: Migrate after %d statements of %04d: %v", e.name(), cut, u.version, err)
			}
			u.check(run, dbe, fmt.Sprintf("cut after %d statements", cut), want)
			if err := Migrate(ctx, conn); err != nil { // recorded: nothing runs
				t.Errorf("%s: Migrate again: %v", e.name(), err)
			}
			_ = srv.boot.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	}
}

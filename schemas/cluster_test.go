package schemas

import (
	"strings"
	"testing"
)

func TestClusterDDLRewrite(t *testing.T) {
	d := ClusterDDL{Cluster: "c1", Database: "db"}
	tables := map[string]bool{"t": true, "u": true}
	f := func(stmt, want string) {
		t.Helper()
		got, err := d.Rewrite(stmt, tables)
		if err != nil {
			t.Fatalf("Rewrite(%q): %v", stmt, err)
		}
		if got != want {
			t.Errorf("unexpected rewrite of %q\n got %q\nwant %q", stmt, got, want)
		}
	}
	f("CREATE TABLE IF NOT EXISTS t (a UInt8, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY a",
		"CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c1 (a UInt8, v UInt64) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', v) ORDER BY a")
	f("CREATE TABLE t (a UInt8)\nENGINE = MergeTree\nORDER BY a",
		"CREATE TABLE db.t ON CLUSTER c1 (a UInt8)\nENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}')\nORDER BY a")
	f("CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
		"CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c1 (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a")
	f("CREATE VIEW IF NOT EXISTS v AS SELECT a FROM t ANY LEFT JOIN (SELECT a FROM u) USING a WHERE toYear(x) = extract(YEAR FROM x)",
		"CREATE VIEW IF NOT EXISTS db.v ON CLUSTER c1 AS SELECT a FROM db.t ANY LEFT JOIN (SELECT a FROM db.u) USING a WHERE toYear(x) = extract(YEAR FROM x)")
	f("CREATE VIEW v AS SELECT a FROM\n(\n SELECT a FROM t\n)", "CREATE VIEW db.v ON CLUSTER c1 AS SELECT a FROM\n(\n SELECT a FROM db.t\n)")
	f("ALTER TABLE t ADD COLUMN b UInt8", "ALTER TABLE db.t ON CLUSTER c1 ADD COLUMN b UInt8")
	// Not ON CLUSTER: 18.16 refuses MODIFY ORDER BY there; replication carries it.
	f("ALTER TABLE t ADD COLUMN b UInt8,\n  MODIFY ORDER BY (a, b)", "ALTER TABLE db.t ADD COLUMN b UInt8,\n  MODIFY ORDER BY (a, b)")
	f("DROP VIEW IF EXISTS v", "DROP VIEW IF EXISTS db.v ON CLUSTER c1")
	f("INSERT INTO t (a, b)\nSELECT a, b FROM u", "INSERT INTO db.t (a, b)\nSELECT a, b FROM db.u")
	f("RENAME TABLE t TO t_old, u TO t", "RENAME TABLE db.t TO db.t_old, db.u TO db.t ON CLUSTER c1")

	for _, bad := range []string{
		"CREATE TABLE t (a UInt8) ENGINE = Log",
		"INSERT INTO t (a) VALUES (1)",
		"RENAME TABLE db.t TO u",
		"ALTER TABLE x ADD COLUMN b UInt8, MODIFY ORDER BY (a, b)", // not a table of the migrations
	} {
		if got, err := d.Rewrite(bad, tables); err == nil {
			t.Errorf("Rewrite(%q) = %q; want an error", bad, got)
		}
	}
}

// Every statement of the embedded migrations runs on a cluster: replicated,
// ON CLUSTER, with the tables a view reads named in the database.
func TestClusterDDLMigrations(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	tables := migrationTables(ms)
	d := ClusterDDL{Cluster: "immeter", Database: "dbx"}
	for _, m := range ms {
		for _, stmt := range m.Statements {
			got, err := d.Rewrite(stmt, tables)
			if err != nil {
				t.Errorf("migration %04d_%s: %v", m.Version, m.Name, err)
				continue
			}
			if !strings.Contains(got, " ON CLUSTER immeter") && !strings.HasPrefix(got, "INSERT INTO dbx.") &&
				!(strings.HasPrefix(got, "ALTER TABLE dbx.") && reOrderBy.MatchString(got)) {
				t.Errorf("migration %04d_%s: no ON CLUSTER in %q", m.Version, m.Name, got)
			}
			if strings.Contains(got, "MergeTree") && !strings.Contains(got, "ENGINE = Replicated") {
				t.Errorf("migration %04d_%s: engine not replicated in %q", m.Version, m.Name, got)
			}
			for _, w := range strings.Fields(got) {
				if tables[w] {
					t.Errorf("migration %04d_%s: table %s not named in its database in %q", m.Version, m.Name, w, got)
				}
			}
		}
	}
}

package schemas

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/internal/testenv"
)

const (
	// A dead letter as aggregators before migration 0017 wrote it, and as
	// they write it since.
	sqlTestOldDeadLetter = `INSERT INTO dead_letters (received_at, src_topic, src_partition, src_offset, app, reason, payload)`
	sqlTestNewDeadLetter = `INSERT INTO dead_letters
		(received_at, src_topic, src_partition, src_offset, src_epoch, app, reason, payload)`
	sqlTestDeadLetters = `SELECT src_partition, src_offset, src_epoch, reason FROM dead_letters FINAL
		ORDER BY src_partition, src_offset, src_epoch, reason`
)

// TestMigrationDeadLettersEpoch: migration 0017 adds src_epoch to the key
// of dead_letters on every engine. A row written before it has epoch 0; a
// dead letter of another epoch at the same source offset keeps its own row,
// one of the same epoch replaces it. On the server, Migrate also finishes
// the migration when it was cut short after the ALTER (18.16 has no ADD
// COLUMN IF NOT EXISTS: the ALTER must not run twice).
func TestMigrationDeadLettersEpoch(t *testing.T) {
	upgrade{
		version: 17, statements: 1, // the ALTER
		cuts: []int{0, 1},
		// A dead letter at offset 7 of partition 3, from before 0017.
		before: func(run runner, e engine) []string {
			run(e, "old dead letter", sqlTestOldDeadLetter,
				[]any{at("2026-10-01 00:00:10"), "im.usage.events", int32(3), int64(7), app1, "type: old", `{"type":"old"}`})
			return nil
		},
		check: func(run runner, e engine, what string, _ []string) {
			t.Helper()
			if got := strings.Join(run(e, "dead letters", sqlTestDeadLetters).rows, "\n"); got != "3\t7\t0\ttype: old" {
				t.Fatalf("%s: %s: dead letters after 0017:\n%s\nwant the old one, with epoch 0", e.name(), what, got)
			}
			run(e, "new dead letters", sqlTestNewDeadLetter,
				[]any{at("2026-10-02 00:00:10"), "im.usage.events", int32(3), int64(7), uint32(0), app1, "type: old", `{"type":"old"}`}, // replayed
				[]any{at("2026-10-03 00:00:10"), "im.usage.events", int32(3), int64(7), uint32(1), app1, "type: new", `{"type":"new"}`}, // recreated topic
			)
			want := "3\t7\t0\ttype: old\n3\t7\t1\ttype: new"
			if got := strings.Join(run(e, "dead letters", sqlTestDeadLetters).rows, "\n"); got != want {
				t.Errorf("%s: %s: dead letters of two epochs at one offset:\n%s\nwant\n%s", e.name(), what, got, want)
			}
		},
	}.test(t)
}

// TestClusterDeadLettersEpoch: on replicas (make test-cluster), migration
// 0017 runs on a database migrated before it (18.16's distributed DDL
// refuses MODIFY ORDER BY: the ALTER runs on one replica and replication
// carries it), and both replicas then keep a dead letter of each epoch at
// one source offset, a replay replacing its row.
func TestClusterDeadLettersEpoch(t *testing.T) {
	addrs, cluster := testenv.ClusterReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := clusterBefore17(ctx, t, addrs[0], cluster)

	// 0017 through OpenClickHouse, as at the start of the new release.
	var conns []driver.Conn
	for _, addr := range addrs[:2] {
		conn, err := OpenClickHouse(ctx, ClickHouseConfig{Addr: addr, Database: db, Cluster: cluster})
		if err != nil {
			t.Fatalf("open %s: %v", addr, err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	if err := InsertRow(ctx, conns[0], sqlTestNewDeadLetter, // replayed
		at("2026-10-02 00:00:10"), "im.usage.events", int32(3), int64(7), uint32(0), app1, "type: old", `{"type":"old"}`); err != nil {
		t.Fatal(err)
	}
	if err := InsertRow(ctx, conns[1], sqlTestNewDeadLetter, // recreated topic
		at("2026-10-03 00:00:10"), "im.usage.events", int32(3), int64(7), uint32(1), app1, "type: new", `{"type":"new"}`); err != nil {
		t.Fatal(err)
	}
	if err := conns[0].Exec(ctx, "OPTIMIZE TABLE dead_letters PARTITION 202610 FINAL"); err != nil {
		t.Fatal(err)
	}
	want := "3 7 0 type: old\n3 7 1 type: new\n"
	for i, conn := range conns {
		rows, err := conn.Query(ctx, sqlTestDeadLetters)
		if err != nil {
			t.Fatalf("replica %s: %v", addrs[i], err)
		}
		var got strings.Builder
		for rows.Next() {
			var part int32
			var offset int64
			var epoch uint32
			var reason string
			if err := rows.Scan(&part, &offset, &epoch, &reason); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&got, "%d %d %d %s\n", part, offset, epoch, reason)
		}
		rows.Close()
		if got.String() != want {
			t.Errorf("replica %s: dead letters after 0017:\n%swant\n%s", addrs[i], got.String(), want)
		}
	}
}

// clusterBefore17 makes a database on the cluster as a release before
// migration 0017 migrated it, through the replica at addr, with a dead
// letter at offset 7 of partition 3 written through a quorum of two
// replicas; it is dropped at the end of the test if it passed.
func clusterBefore17(ctx context.Context, t *testing.T, addr, cluster string) string {
	t.Helper()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db := "test_dlq_" + testenv.Suffix()
	boot, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := boot.Exec(ctx, fmt.Sprintf(sqlCreateDBOn, db, cluster)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = boot.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s ON CLUSTER %s", db, cluster))
		}
		boot.Close()
	})
	old, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db},
		Settings: ReplicaSettings(2, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	d := ClusterDDL{Cluster: cluster, Database: db}
	tables := migrationTables(ms)
	exec := func(s string) {
		t.Helper()
		s, err := d.Rewrite(s, tables)
		if err == nil {
			err = old.Exec(ctx, s)
		}
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	exec(sqlCreateMigrations)
	for _, m := range ms {
		if m.Version >= 17 {
			break
		}
		for _, s := range m.Statements {
			exec(s)
		}
		if err := InsertRow(ctx, old, sqlInsertMigration, uint32(m.Version), m.Name, at("2026-10-01 00:00:01")); err != nil {
			t.Fatal(err)
		}
	}
	if err := InsertRow(ctx, old, sqlTestOldDeadLetter,
		at("2026-10-01 00:00:10"), "im.usage.events", int32(3), int64(7), app1, "type: old", `{"type":"old"}`); err != nil {
		t.Fatal(err)
	}
	return db
}

package aggregate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// TestClusterEventIDsByDay: on replicas (make test-cluster), migration 0016
// leaves event_ids partitioned by day on every replica. From ClickHouse
// 20.4 a day dropped through one replica is gone from the other (the drop
// is replicated without ON CLUSTER) while the days kept stay on both;
// before (18.16), nothing is dropped (aggregate.ErrIDsKept) and
// sequentially consistent reads keep working.
func TestClusterEventIDsByDay(t *testing.T) {
	addrs, cluster := testenv.ClusterReplicas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := "test_ids_" + testenv.Suffix()
	open := func(addr string) schemas.ClickHouseConfig {
		return schemas.ClickHouseConfig{Addr: addr, Database: db, Cluster: cluster}
	}
	conn1, err := schemas.OpenClickHouse(ctx, open(addrs[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn1.Close()
	conn2, err := schemas.OpenClickHouse(ctx, open(addrs[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	t.Cleanup(func() {
		if !t.Failed() {
			_ = conn1.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cluster)
		}
	})
	for i, conn := range []struct {
		name string
		c    func(q string, args ...any) (string, error)
	}{
		{addrs[0], func(q string, args ...any) (string, error) {
			var s string
			err := conn1.QueryRow(ctx, q, args...).Scan(&s)
			return s, err
		}},
		{addrs[1], func(q string, args ...any) (string, error) {
			var s string
			err := conn2.QueryRow(ctx, q, args...).Scan(&s)
			return s, err
		}},
	} {
		got, err := conn.c("SELECT arrayStringConcat(groupArray(concat(name, ':', engine, ':', partition_key)), ',') FROM (SELECT name, engine, partition_key FROM system.tables WHERE database = currentDatabase() AND name LIKE 'event_ids%' ORDER BY name)")
		if err != nil {
			t.Fatal(err)
		}
		if got != "event_ids:ReplicatedReplacingMergeTree:toYYYYMMDD(day)" {
			t.Errorf("replica %d (%s): event_ids tables after the migrations: %q; want one, replicated, partitioned by day", i+1, conn.name, got)
		}
	}

	b, err := conn1.PrepareBatch(ctx, "INSERT INTO event_ids (src_partition, app, day, id_hi, id_lo, src_offset)")
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{"2026-08-20", "2026-08-21", "2026-09-15"} {
		day, _ := time.Parse(time.DateOnly, d)
		if err := b.Append(int32(0), uint32(1400000001), day, uint64(i), uint64(i), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	// Before 20.4 a dropped partition breaks every sequentially
	// consistent read of the table: the days are kept, and reads work.
	v, err := conn1.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-08-21,2026-09-15"
	dropped, err := aggregate.DropIDDays(ctx, conn1, schemas.DayFromDate(2026, 8, 21))
	if v.Version.Major < 20 || v.Version.Major == 20 && v.Version.Minor < 4 {
		if !errors.Is(err, aggregate.ErrIDsKept) || len(dropped) != 0 {
			t.Fatalf("DropIDDays on replicated %s: dropped %v, %v; want none and ErrIDsKept", v.Version, dropped, err)
		}
		want = "2026-08-20," + want
	} else if err != nil || strings.Join(dropped, ",") != "2026-08-20" {
		t.Fatalf("DropIDDays through replica 1: dropped %v, %v; want 2026-08-20", dropped, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var days string
		err := conn2.QueryRow(ctx, "SELECT arrayStringConcat(groupArray(toString(day)), ',') FROM (SELECT day FROM event_ids ORDER BY day)").Scan(&days)
		if err == nil && days == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 2 holds the days %q (%v); want %s", days, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

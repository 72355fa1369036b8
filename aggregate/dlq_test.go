package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv"
)

// TestDeadLettersOfRecreatedTopic: an invalid event X at offset 1 of a
// partition, then the topic deleted and created again (offsets from 0) and
// another invalid event Y at offset 1 of the same partition, in the same
// month. Before, both rows of dead_letters had the key (topic, partition,
// 1), and a merge kept only one of them: X disappeared from the table
// (the DLQ topic kept both). Now the key holds the partition's epoch too:
// both rows stay, and the DLQ records carry the epoch in the header
// immeter-source-epoch. X is also written twice through the flush (a crash
// after dead_letters, before the position; the restart reads it again):
// one row for it all the same.
func TestDeadLettersOfRecreatedTopic(t *testing.T) {
	t.Parallel()
	env := integration(t)
	_, chAddr := testenv.Services(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildImmeter(t)
	proxy := newCHProxy(t, chAddr)
	log := &syncWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of immeter aggregate (tail):\n%s", log.tail(40))
		}
	})
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	now := time.Now().Add(-time.Minute).Format(time.RFC3339Nano)
	key := []byte("1400000001") // one key: one partition, offsets 0 and 1
	login := func(id string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":"login","app":1400000001,"time":%q,"user":%q}`, id, now, id)
	}
	x := fmt.Appendf(nil, `{"id":"x","type":"login","app":1400000001,"time":%q}`, now)               // no user
	y := fmt.Appendf(nil, `{"id":"y","type":"teleport","app":1400000001,"time":%q,"user":"u"}`, now) // unknown type

	env.produce(ctx, t, env.events, []kafka.Message{{Key: key, Value: login("a")}, {Key: key, Value: x}})
	p := env.startAggregate(t, bin, proxy.addr(), log, "FLUSH_INTERVAL=50ms")
	proxy.arm(kill9(p), "INSERT INTO dead_letters", "INSERT INTO consumer_offsets")
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("no crash between the dead letter and the position of a flush in 60s")
	}
	proxy.reset()
	_, stop := env.runAggregator(ctx, t, "replay", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()

	env.recreateTopic(ctx, t)
	env.produce(ctx, t, env.events, []kafka.Message{{Key: key, Value: login("b")}, {Key: key, Value: y}})
	accepted := 0
	for part := range testPartitions {
		_, err := aggregate.AcceptGap(ctx, env.conn, aggregate.GapConfig{Brokers: env.brokers, Topic: env.events, Group: env.group,
			Partition: part, Reason: "test", By: "tester"})
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, aggregate.ErrNotStuck): // a partition never flushed: nothing to accept
			t.Fatalf("accept gap of partition %d: %v", part, err)
		}
	}
	if accepted == 0 {
		t.Fatal("no partition stuck after the topic was recreated")
	}
	_, stop = env.runAggregator(ctx, t, "after", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()

	// The DLQ topic: X twice (the crash), then Y, all at offset 1 of one
	// partition; X's copies of one epoch, Y of another.
	dlq := env.readAll(ctx, t, env.dlq)
	epochOf := map[string][]string{}
	for _, m := range dlq {
		h := map[string]string{}
		for _, kv := range m.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["immeter-source-offset"] != "1" || h["immeter-source-topic"] != env.events {
			t.Errorf("unexpected DLQ record %s: headers %v; want source offset 1 of %s", m.Value, h, env.events)
		}
		epochOf[string(m.Value)] = append(epochOf[string(m.Value)], h["immeter-source-epoch"])
	}
	ex, ey := epochOf[string(x)], epochOf[string(y)]
	if len(dlq) != 3 || len(ex) != 2 || len(ey) != 1 {
		t.Fatalf("unexpected DLQ records; got %d (%d of X, %d of Y); want X twice (written again after the crash), Y once", len(dlq), len(ex), len(ey))
	}
	if ex[0] == "" || ex[0] != ex[1] || ey[0] == "" || ey[0] == ex[0] {
		t.Errorf("unexpected immeter-source-epoch headers; got %v for X, %v for Y; want one epoch for both copies of X, another for Y", ex, ey)
	}
	t.Logf("X at epoch %s (twice), Y at epoch %s", ex[0], ey[0])

	var months uint64
	if err := env.conn.QueryRow(ctx, "SELECT uniqExact(toYYYYMM(received_at)) FROM dead_letters").Scan(&months); err != nil {
		t.Fatal(err)
	}
	if months != 1 {
		t.Logf("the dead letters were written in %d months: their rows never shared a partition of dead_letters, which this test needs to show the defect", months)
	}
	// dead_letters, merged: one row of X (its two writes have one key),
	// one of Y.
	env.optimizeFinal(ctx, t, "dead_letters")
	rows, err := env.conn.Query(ctx, "SELECT src_partition, src_offset, payload FROM dead_letters FINAL ORDER BY payload")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		part    int32
		offset  int64
		payload string
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.part, &r.offset, &r.payload); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	rows.Close()
	if len(got) != 2 || got[0].payload != string(x) || got[1].payload != string(y) ||
		got[0].offset != 1 || got[1].offset != 1 || got[0].part != got[1].part {
		t.Fatalf("unexpected dead_letters rows after OPTIMIZE FINAL; got %+v; want X and Y, at offset 1 of one partition", got)
	}
	var xe, ye uint32
	if err := env.conn.QueryRow(ctx, "SELECT anyIf(src_epoch, payload = ?), anyIf(src_epoch, payload = ?) FROM dead_letters",
		string(x), string(y)).Scan(&xe, &ye); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(xe) != ex[0] || fmt.Sprint(ye) != ey[0] {
		t.Errorf("unexpected src_epoch; got %d for X, %d for Y; want the DLQ headers' %s, %s", xe, ye, ex[0], ey[0])
	}
}

package main

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// TestRollupDaemonPublishFails: a pass of the rollup daemon that stores a
// revision and then cannot publish it (here the billing topic does not
// exist yet; in production, Kafka down at that moment) must still get it
// published once Kafka takes it, by the same running daemon: the next
// passes find the revision stored with the same figures and publish nothing
// new, so only a repair sends it.
func TestRollupDaemonPublishFails(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const app = 1400000078

	startAggregator(ctx, t, env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 50*time.Millisecond, clock.Now
	})
	runCtx, stop := context.WithCancel(ctx) // the rollup's
	defer stop()
	e := schemas.Event{ID: "pf-1", Type: schemas.Login, App: app, User: "u1", Time: time.Date(2026, 10, 3, 9, 0, 0, 0, loc)}
	b, _ := json.Marshal(e)
	env.produce(ctx, t, env.events, []kafka.Message{{Key: []byte(strconv.Itoa(app)), Value: b}})
	env.waitAggregated(ctx, t, env.events)

	late := env.billing + ".late" // created only after the first pass
	testenv.DeleteTopicsAtEnd(t, env.brokers, late)
	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) {
		c.Location, c.Now, c.Interval, c.Topic = loc, clock.Now, time.Hour, late
	}), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() { _ = r.Run(runCtx, 20*time.Millisecond) }()

	// The first pass stores revision 1, then fails to publish it.
	stored := func() uint64 {
		var n uint64
		if err := env.conn.QueryRow(ctx, "SELECT count() FROM billing_records WHERE app = ?", uint32(app)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for stored() == 0 {
		if ctx.Err() != nil {
			t.Fatal("no revision stored")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // passes after the failed one: unchanged
	if err := ingest.EnsureTopics(ctx, env.brokers, testPartitions, 1, late); err != nil {
		t.Fatal(err)
	}

	var got []kafka.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if testenv.Count(ctx, t, env.brokers, late) > 0 {
			time.Sleep(500 * time.Millisecond) // a few more ticks: nothing else may come
			got = testenv.ReadAll(ctx, t, env.brokers, late)
		}
	}
	if len(got) != 1 {
		t.Fatalf("revision 1 stored while the billing topic was missing: %d records published once it exists; want 1", len(got))
	}
	var rec schemas.BillingRecord
	if err := json.Unmarshal(got[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.App != app || rec.Revision != 1 || rec.Status != schemas.Provisional || rec.Usage.MAU != 1 {
		t.Fatalf("unexpected record: app %d revision %d status %s MAU %d", rec.App, rec.Revision, rec.Status, rec.Usage.MAU)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d revisions stored; want 1", n)
	}
}

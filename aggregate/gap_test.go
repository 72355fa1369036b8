package aggregate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// Tests of issue 17 item 2: a partition whose stored position the log no
// longer holds (retention, a recreated topic) or whose stored state went
// away in ClickHouse is never read on in silence.

// logins returns n login events of distinct users and ids, named by tag.
func logins(tag string, n int) []kafka.Message {
	now := time.Now().Add(-time.Minute)
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		app := uint32(1400000001 + i%16) // 16 apps: every partition gets some
		v, err := json.Marshal(schemas.Event{ID: fmt.Sprintf("%s-%d", tag, i), Type: schemas.Login, App: app, Time: now,
			User: fmt.Sprintf("%s-u%d", tag, i)})
		if err != nil {
			panic(err)
		}
		msgs[i] = kafka.Message{Key: []byte(strconv.FormatUint(uint64(app), 10)), Value: v} // keyed by app, as the contract says
	}
	return msgs
}

// deleteRecords deletes the records of every partition of the events topic
// below the offsets given (as kafka-delete-records.sh does).
func (e *testEnv) deleteRecords(ctx context.Context, t *testing.T, before map[int]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 10000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = e.events
	for p, o := range before {
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Partition, rp.Offset = int32(p), o
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	for _, tp := range res.Topics {
		for _, p := range tp.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("delete records of %s/%d: %v", tp.Topic, p.Partition, err)
			}
		}
	}
}

// totals returns the logins and the distinct users ClickHouse holds.
func (e *testEnv) totals(ctx context.Context, t *testing.T) (logins, users uint64) {
	t.Helper()
	if err := e.conn.QueryRow(ctx, `SELECT sum(l) FROM (SELECT argMax(logins, version) AS l FROM daily_usage
		GROUP BY app, day, src_partition)`).Scan(&logins); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.QueryRow(ctx, `SELECT uniqExact(app, day, user) FROM user_days`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	return logins, users
}

// waitStuck waits until agg is stuck on every partition, with kind.
func waitStuck(ctx context.Context, t *testing.T, agg *aggregate.Aggregator, kind string) []aggregate.Stuck {
	t.Helper()
	for {
		st := agg.Stats().Stuck
		n := 0
		for _, s := range st {
			if s.Kind == kind {
				n++
			}
		}
		if n == testPartitions {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not stuck (%s) on all %d partitions in time: %+v", kind, testPartitions, st)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// accept runs AcceptGap on every partition and returns the gaps.
func (e *testEnv) accept(ctx context.Context, t *testing.T) map[int]aggregate.Gap {
	t.Helper()
	gaps := map[int]aggregate.Gap{}
	for p := range testPartitions {
		g, err := aggregate.AcceptGap(ctx, e.conn, aggregate.GapConfig{Brokers: e.brokers, Topic: e.events, Group: e.group,
			Partition: p, Reason: "test", By: "tester"})
		if err != nil {
			t.Fatalf("accept gap of partition %d: %v", p, err)
		}
		gaps[p] = g
	}
	return gaps
}

// A partition started without a stored position is read from its first
// retained offset, and that offset is what is stored: before, a flush with
// nothing read stored 0, and after a restart the aggregator fetched offset
// 0 (deleted) and retried forever, counting nothing.
func TestStartAfterRetentionStoresFirstOffset(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env.produce(ctx, t, env.events, logins("old", 200))
	end := env.endOffsets(ctx, t, env.events)
	env.deleteRecords(ctx, t, end) // all of them, as retention would
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	agg, stop := env.runAggregator(ctx, t, "first", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	if got, err := env.aggregated(ctx); err != nil || fmt.Sprint(got) != fmt.Sprint(end) {
		t.Fatalf("unexpected stored positions; got %v (%v); want the log starts %v", got, err, end)
	}
	if st := agg.Stats(); st.Counted != 0 || len(st.Stuck) != 0 {
		t.Fatalf("unexpected stats of the first aggregator: %+v", st)
	}
	agg, stop = env.runAggregator(ctx, t, "second", cfg, env.conn)
	env.produce(ctx, t, env.events, logins("new", 100))
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Counted != 100 || len(st.Stuck) != 0 {
		t.Errorf("unexpected stats after the restart; got %+v; want 100 counted, none stuck", st)
	}
	if l, u := env.totals(ctx, t); l != 100 || u != 100 {
		t.Errorf("unexpected totals; got %d logins, %d users; want 100, 100", l, u)
	}
}

// Events deleted before they were aggregated (the aggregator was down
// longer than the retention) stop their partition, which Stats and the log
// report with the real offsets, until an operator accepts the gap; the gap
// is recorded in offset_gaps, and the events after it are counted.
func TestRetentionGapStopsPartitionUntilAccepted(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	env.produce(ctx, t, env.events, logins("a", 100))
	_, stop := env.runAggregator(ctx, t, "before", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	stored := env.endOffsets(ctx, t, env.events)

	// Down: 80 more arrive, and retention deletes all but the last 5 of
	// each partition.
	env.produce(ctx, t, env.events, logins("b", 80))
	end := env.endOffsets(ctx, t, env.events)
	cut, kept := map[int]int64{}, 0
	for p, o := range end {
		cut[p] = max(stored[p], o-5)
		kept += int(o - cut[p])
	}
	env.deleteRecords(ctx, t, cut)

	agg, stop := env.runAggregator(ctx, t, "after", cfg, env.conn)
	stuck := waitStuck(ctx, t, agg, aggregate.GapBeforeLogStart)
	for _, s := range stuck {
		if s.Position != stored[s.Partition] || s.LogStart != cut[s.Partition] || s.LogEnd != end[s.Partition] {
			t.Errorf("partition %d: unexpected stuck report %+v; want position %d, log start %d, end %d",
				s.Partition, s, stored[s.Partition], cut[s.Partition], end[s.Partition])
		}
	}
	time.Sleep(time.Second) // stuck means stuck: nothing read meanwhile
	if l, _ := env.totals(ctx, t); l != 100 || agg.Stats().Counted != 0 {
		t.Fatalf("unexpected counts while stuck; got %d logins, %+v; want 100 and none counted", l, agg.Stats())
	}
	if _, err := aggregate.AcceptGap(ctx, env.conn, aggregate.GapConfig{Brokers: env.brokers, Topic: env.events, Group: env.group,
		Partition: 0}); err == nil {
		t.Errorf("AcceptGap without a reason: no error")
	}
	gaps := env.accept(ctx, t)
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Counted != uint64(kept) || len(st.Stuck) != 0 {
		t.Errorf("unexpected stats after the gaps were accepted; got %+v; want %d counted, none stuck", st, kept)
	}
	if l, u := env.totals(ctx, t); l != 100+uint64(kept) || u != l {
		t.Errorf("unexpected totals; got %d logins, %d users; want %d", l, u, 100+kept)
	}
	rows, err := env.conn.Query(ctx, `SELECT partition, kind, from_offset, to_offset, accepted_by, reason FROM offset_gaps
		WHERE consumer_group = ? AND topic = ? ORDER BY partition`, env.group, env.events)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var p int32
		var kind, by, reason string
		var from, to int64
		if err := rows.Scan(&p, &kind, &from, &to, &by, &reason); err != nil {
			t.Fatal(err)
		}
		n++
		if kind != aggregate.GapBeforeLogStart || from != stored[int(p)] || to != cut[int(p)] || by != "tester" || reason != "test" {
			t.Errorf("unexpected offset_gaps row: %d %s %d %d %s %s; want from %d to %d", p, kind, from, to, by, reason, stored[int(p)], cut[int(p)])
		}
		if g := gaps[int(p)]; g.From != from || g.To != to {
			t.Errorf("partition %d: AcceptGap returned %+v; the table has %d to %d", p, g, from, to)
		}
	}
	if n != testPartitions {
		t.Errorf("unexpected offset_gaps rows; got %d; want %d", n, testPartitions)
	}
	if _, err := aggregate.AcceptGap(ctx, env.conn, aggregate.GapConfig{Brokers: env.brokers, Topic: env.events, Group: env.group,
		Partition: 0, Reason: "again", By: "tester"}); err == nil || !strings.Contains(err.Error(), "not stuck") {
		t.Errorf("AcceptGap on a partition that is not stuck: got %v; want ErrNotStuck", err)
	}
}

// A topic deleted and created again while the aggregator is down: its
// offsets start from 0 again. Before, the aggregator read on from the
// stored offset and skipped the new topic's first events in silence (50
// aggregated, 80 new, 30 counted). Now every partition is stuck until the
// gap is accepted, then all 80 count, on top of the 50.
func TestRecreatedTopicStopsPartitionUntilAccepted(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	env.produce(ctx, t, env.events, logins("a", 50))
	_, stop := env.runAggregator(ctx, t, "before", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	old := env.endOffsets(ctx, t, env.events)
	env.recreateTopic(ctx, t)
	env.produce(ctx, t, env.events, logins("b", 80))

	agg, stop := env.runAggregator(ctx, t, "after", cfg, env.conn)
	stuck := waitStuck(ctx, t, agg, aggregate.GapTopicRecreated)
	for _, s := range stuck {
		if s.Position != old[s.Partition] || s.StoredTopicID == "" || s.TopicID == s.StoredTopicID {
			t.Errorf("partition %d: unexpected stuck report %+v; want position %d and two topic ids", s.Partition, s, old[s.Partition])
		}
	}
	time.Sleep(time.Second)
	if st := agg.Stats(); st.Counted != 0 {
		t.Fatalf("counted while stuck: %+v", st)
	}
	env.accept(ctx, t)
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Counted != 80 || len(st.Stuck) != 0 {
		t.Errorf("unexpected stats after the gaps were accepted; got %+v; want 80 counted, none stuck", st)
	}
	if l, u := env.totals(ctx, t); l != 130 || u != 130 {
		t.Errorf("unexpected totals; got %d logins, %d users; want 130, 130", l, u)
	}
	// And a restart reads on from there: nothing twice, nothing stuck.
	env.produce(ctx, t, env.events, logins("c", 20))
	agg, stop = env.runAggregator(ctx, t, "restarted", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Counted != 20 || st.Replayed != 0 || len(st.Stuck) != 0 {
		t.Errorf("unexpected stats after a restart; got %+v; want 20 counted", st)
	}
	if l, u := env.totals(ctx, t); l != 150 || u != 150 {
		t.Errorf("unexpected totals after a restart; got %d logins, %d users; want 150, 150", l, u)
	}
}

// The same under a running aggregator: whether its fetch at the old offset
// fails (the new topic is shorter) or succeeds (it is longer already), the
// flush notices the other topic ID and writes none of the new topic's
// events with the old topic's positions.
func TestTopicRecreatedUnderRunningAggregator(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	env.produce(ctx, t, env.events, logins("a", 50))
	agg, stop := env.runAggregator(ctx, t, "a", cfg, env.conn)
	env.waitAggregated(ctx, t)
	env.recreateTopic(ctx, t)
	env.produce(ctx, t, env.events, logins("b", 80))
	waitStuck(ctx, t, agg, aggregate.GapTopicRecreated)
	if l, u := env.totals(ctx, t); l != 50 || u != 50 {
		t.Fatalf("unexpected totals while stuck; got %d logins, %d users; want 50, 50", l, u)
	}
	env.accept(ctx, t)
	env.waitAggregated(ctx, t)
	stop()
	// Stats count what was folded: events of the new topic read before the
	// flush noticed it, dropped unwritten, count again once read again.
	if st := agg.Stats(); st.Counted < 130 || len(st.Stuck) != 0 {
		t.Errorf("unexpected stats; got %+v; want at least 130 counted, none stuck", st)
	}
	if l, u := env.totals(ctx, t); l != 130 || u != 130 {
		t.Errorf("unexpected totals; got %d logins, %d users; want 130, 130", l, u)
	}
}

// recreateTopic deletes the events topic and creates it again, empty.
func (e *testEnv) recreateTopic(ctx context.Context, t *testing.T) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	if _, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{e.events}}); err != nil {
		t.Fatal(err)
	}
	for {
		err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, 1, e.events)
		if err == nil {
			if end := e.endOffsets(ctx, t, e.events); len(end) == testPartitions && end[0] == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("recreate topic %s: %v", e.events, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ClickHouse loses the aggregated data under a running aggregator (the
// database dropped and migrated again). Before, the aggregator wrote its
// in-memory counters onto the empty tables: 80 logins but 40 users, which
// a restart did not repair. Now it notices at the next flush that its
// stored position went away, loads the partition again and reads it from
// the start: logins and users agree.
func TestClickHouseStateLostUnderRunningAggregator(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	env.produce(ctx, t, env.events, logins("a", 40))
	agg, stop := env.runAggregator(ctx, t, "a", cfg, env.conn)
	env.waitAggregated(ctx, t)
	if err := env.conn.Exec(ctx, "DROP DATABASE "+env.ch.Database); err != nil {
		t.Fatal(err)
	}
	conn, err := schemas.OpenClickHouse(ctx, env.ch) // immeter migrate
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	env.produce(ctx, t, env.events, logins("b", 40))
	env.waitAggregated(ctx, t)
	stop()
	if l, u := env.totals(ctx, t); l != 80 || u != 80 {
		t.Errorf("unexpected totals; got %d logins, %d users; want 80, 80", l, u)
	}
	if st := agg.Stats(); len(st.Stuck) != 0 {
		t.Errorf("stuck: %+v", st.Stuck)
	}
}

// Issue 17 item 5: event_ids is a ReplacingMergeTree without a version, so
// a merge keeps the last inserted row of a key. Crashes placed after a
// flush wrote the event ids but before it stored the position, with
// OPTIMIZE ... FINAL of event_ids between each crash and the restart: the
// restart tells the replayed events (their first offset, from event_ids)
// from the repeated ids, and the totals are exact. It holds because an id
// never gets a second row with another offset (a repeat adds no row, a
// replay writes the same offset): the test checks that too.
func TestEventIDsMergedBetweenCrashAndRestart(t *testing.T) {
	t.Parallel()
	env := integration(t)
	_, chAddr := testenv.Services(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 5000, now: time.Now()})
	logStream(t, s)
	bin := buildImmeter(t)
	proxy := newCHProxy(t, chAddr)
	log := &syncWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of immeter aggregate (tail):\n%s", log.tail(60))
		}
	})
	produced := env.produceSlowly(ctx, t, s.msgs, 6, 3*time.Second)
	crashes := 0
	for i := range 3 {
		p := env.startAggregate(t, bin, proxy.addr(), log, "FLUSH_INTERVAL=50ms")
		select {
		case <-p.consuming:
		case <-time.After(60 * time.Second):
			t.Fatalf("crash %d: immeter aggregate not consuming after 60s", i+1)
		}
		// Crash once this run stored a position of its own: the restart
		// then replays from a stored position, ids below it not replayed.
		before, _ := env.aggregated(ctx)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			got, _ := env.aggregated(ctx)
			if fmt.Sprint(got) != fmt.Sprint(before) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		proxy.arm(kill9(p), "INSERT INTO event_ids", "INSERT INTO daily_usage", "INSERT INTO consumer_offsets")
		select {
		case <-p.exited:
			crashes++
		case <-time.After(5 * time.Second):
			p.kill()
		}
		<-p.exited
		proxy.reset()
		env.optimizeFinal(ctx, t, "event_ids")
		got, _ := env.aggregated(ctx)
		t.Logf("crash %d; aggregated up to %v", i+1, got)
	}
	if crashes == 0 {
		t.Fatal("no crash placed between the event ids and the position of a flush")
	}
	t.Logf("%d of 3 crashes between the event ids and the position of a flush", crashes)
	<-produced
	p := env.startAggregate(t, bin, proxy.addr(), log, "FLUSH_INTERVAL=50ms")
	env.waitAggregated(ctx, t)
	p.stop(t)
	var multi uint64
	if err := env.conn.QueryRow(ctx, `SELECT count() FROM (SELECT src_partition, app, day, id_hi, id_lo
		FROM event_ids GROUP BY src_partition, app, day, id_hi, id_lo HAVING uniqExact(src_offset) > 1)`).Scan(&multi); err != nil {
		t.Fatal(err)
	}
	if multi != 0 {
		t.Errorf("unexpected event ids stored with more than one offset: %d", multi)
	}
	env.checkTotals(ctx, t, s)
}

// optimizeFinal merges every partition of table.
func (e *testEnv) optimizeFinal(ctx context.Context, t *testing.T, table string) {
	t.Helper()
	rows, err := e.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active", e.ch.Database, table)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	for _, p := range parts {
		if err := e.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" PARTITION "+p+" FINAL"); err != nil {
			t.Fatalf("OPTIMIZE TABLE %s PARTITION %s FINAL: %v", table, p, err)
		}
	}
}

// A database lost (dropped and migrated again) while the aggregator was
// down, when Kafka no longer has the partition from offset 0: the group's
// committed offsets say a position was stored, so the partition is stuck
// (state-lost) rather than read from the log start as if new, until the
// gap is accepted.
func TestStateLostWhileDownStopsPartitionUntilAccepted(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, StuckRecheck: 200 * time.Millisecond}
	env.produce(ctx, t, env.events, logins("a", 100))
	_, stop := env.runAggregator(ctx, t, "before", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	if err := env.conn.Exec(ctx, "DROP DATABASE "+env.ch.Database); err != nil {
		t.Fatal(err)
	}
	conn, err := schemas.OpenClickHouse(ctx, env.ch)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	end := env.endOffsets(ctx, t, env.events)
	cut, kept := map[int]int64{}, 0
	for p, o := range end {
		cut[p] = o / 2
		kept += int(o - cut[p])
	}
	env.deleteRecords(ctx, t, cut)

	agg, stop := env.runAggregator(ctx, t, "after", cfg, env.conn)
	for _, s := range waitStuck(ctx, t, agg, aggregate.GapStateLost) {
		if s.Position != -1 || s.LogStart != cut[s.Partition] {
			t.Errorf("partition %d: unexpected stuck report %+v; want no position, log start %d", s.Partition, s, cut[s.Partition])
		}
	}
	gaps := env.accept(ctx, t)
	for p, g := range gaps {
		if g.Kind != aggregate.GapStateLost || g.From != 0 || g.To != cut[p] {
			t.Errorf("partition %d: unexpected gap %+v; want state-lost from 0 to %d", p, g, cut[p])
		}
	}
	env.waitAggregated(ctx, t)
	stop()
	if l, u := env.totals(ctx, t); l != uint64(kept) || u != l {
		t.Errorf("unexpected totals; got %d logins, %d users; want %d", l, u, kept)
	}
}

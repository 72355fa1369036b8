package aggregate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/internal/testenv/truth"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// Fault tests (issue 4): each publishes a generated stream to the real
// broker, harms the aggregator while it consumes, and compares what
// ClickHouse holds in the end (rollup.ReadMonth, before and after
// OPTIMIZE FINAL) with the truth computed from the stream as published.
//
// What breaks them, as checked by breaking the code on purpose:
//   - no dedup by (app, id): all four;
//   - an evicted day not loaded again for a late event: all four;
//   - a replayed event at its first offset taken for a duplicate, the
//     version check (o < version) gone, event ids not loaded on open, or
//     the offset written before the counters: kill -9 (the crashes placed
//     inside a flush make it reliable) and, less surely, the rebalance;
//   - resuming from Kafka's committed offset instead of ClickHouse's:
//     kill -9 (the group's Kafka offsets are reset to the end once);
//   - sketch rows of a reopened partition replacing earlier ones: the
//     rebalance (daily sketches against exact DAU).
// The ClickHouse restart guards retries and bounded memory: the aggregator
// keeps its state through the outage, so it replays nothing.

func logStream(t *testing.T, s *stream) {
	t.Helper()
	t.Logf("stream: %d messages: %d repeated ids (%d with other content), %d late, %d invalid",
		len(s.msgs), s.repeats, s.variants, s.late, s.wrong)
}

// The slow tests come first: they start first when the tests run in parallel.

// (b) kill -9 of `immeter aggregate` at random points while it consumes,
// and at chosen points of a flush (after the sets, after the counters),
// while events keep arriving: totals exact.
func TestFaultKill9(t *testing.T) { faultKill9(t) }

// TestFaultKill9Filter is TestFaultKill9 with the ids already written kept
// in Bloom filters so small that nearly every id is a hit (DEDUP_FILTER_BITS
// far below one bit per id): every such event waits for its lookup in
// event_ids, across the kills and restarts, and no event may be dropped or
// counted twice.
func TestFaultKill9Filter(t *testing.T) { faultKill9(t, "DEDUP_FILTER_BITS=0.001") }

func faultKill9(t *testing.T, extraEnv ...string) {
	t.Parallel()
	env := integration(t)
	_, chAddr := testenv.Services(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	seed := faultSeed(t)
	rng := mrand.New(mrand.NewPCG(seed, 2))
	s := genStream(streamSpec{seed: seed, events: 30000, now: time.Now()})
	logStream(t, s)
	bin := buildImmeter(t)
	proxy := newCHProxy(t, chAddr)
	log := &syncWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of immeter aggregate (tail):\n%s", log.tail(60))
		}
	})

	// Kill points: random times, and just before a flush writes its
	// counters (the sets are in) or its offset (the counters are in). Once,
	// while the aggregator is dead, the group's offsets on Kafka are reset
	// to the end: they are informational, ClickHouse's count.
	const random, beforeCounters, beforeOffset, reset = "random", "before counters", "before offset", "reset"
	plan := []string{random, random, random, random, random, random, random, reset,
		beforeCounters, beforeCounters, beforeOffset, beforeOffset}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })

	// The stream's tail is held back until after the kills: the last run
	// must have new events whatever the kills left (the last kill may come
	// after everything else is aggregated), and with filters new ids to
	// look up.
	head, tail := s.msgs[:len(s.msgs)-2000], s.msgs[len(s.msgs)-2000:]
	produced := env.produceSlowly(ctx, t, head, 40, 60*time.Second)
	env2 := append([]string{"FLUSH_INTERVAL=50ms"}, extraEnv...)
	t0 := time.Now()
	for i, kind := range plan {
		p := env.startAggregate(t, bin, proxy.addr(), log, env2...)
		select {
		case <-p.consuming:
		case <-p.exited:
			t.Fatalf("kill %d: immeter aggregate exited before consuming", i+1)
		case <-time.After(60 * time.Second):
			t.Fatalf("kill %d: immeter aggregate not consuming after 60s", i+1)
		}
		delay := time.Duration(rng.Int64N(int64(1200 * time.Millisecond)))
		time.Sleep(delay)
		how := "at a random time"
		switch kind {
		case beforeCounters:
			proxy.arm(kill9(p), "INSERT INTO daily_usage")
		case beforeOffset:
			proxy.arm(kill9(p), "INSERT INTO daily_usage", "INSERT INTO consumer_offsets")
		default:
			p.kill()
		}
		if kind == beforeCounters || kind == beforeOffset {
			select {
			case <-p.exited:
				how = kind + " of a flush"
			case <-time.After(5 * time.Second):
				how = "after waiting 5s for " + kind + " of a flush"
				p.kill()
			}
		}
		<-p.exited
		proxy.reset()
		if kind == reset {
			end := env.endOffsets(ctx, t, env.events)
			env.resetKafkaOffsets(ctx, t, end)
			how += ", then its group's offsets on Kafka reset to the end " + fmt.Sprint(end)
		}
		got, _ := env.aggregated(ctx)
		t.Logf("kill %d %s, %v after it consumed; aggregated up to %v", i+1, how, delay.Round(time.Millisecond), got)
	}
	select {
	case <-produced:
	case <-ctx.Done():
		t.Fatal("producing did not finish in time")
	}
	env.produce(ctx, t, env.events, tail)
	p := env.startAggregate(t, bin, proxy.addr(), log, env2...)
	select {
	case <-p.consuming: // its metrics address is in the log
	case <-p.exited:
		t.Fatal("last immeter aggregate exited before consuming")
	case <-ctx.Done():
		t.Fatal("last immeter aggregate not consuming in time")
	}
	env.waitAggregated(ctx, t)
	if len(extraEnv) > 0 {
		// The filters must have been used: the last run's metrics count
		// the ids it looked up in event_ids.
		stored, falseHits := filterHits(t, log)
		if falseHits == 0 {
			t.Errorf("unexpected filter hits of the last run; got %d stored, %d false; want some false hits", stored, falseHits)
		}
		t.Logf("last run: %d filter hits found in event_ids, %d false hits", stored, falseHits)
	}
	p.stop(t)
	t.Logf("%d kills and recovery in %v", len(plan), time.Since(t0).Round(time.Millisecond))
	env.checkTotals(ctx, t, s)
}

// filterHits reads immeter_aggregate_filter_hits_total from the metrics of
// the last immeter aggregate started with log.
func filterHits(t *testing.T, log *syncWriter) (stored, falseHits int64) {
	t.Helper()
	addrs := regexp.MustCompile(`serving /metrics.* addr=(\S+)`).FindAllStringSubmatch(log.tail(1<<20), -1)
	if len(addrs) == 0 {
		t.Fatal("no metrics address in the log of immeter aggregate")
	}
	resp, err := http.Get("http://" + addrs[len(addrs)-1][1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`immeter_aggregate_filter_hits_total\{result="(\w+)"\} (\S+)`).FindAllStringSubmatch(string(body), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		if m[1] == "false" {
			falseHits = int64(v)
		} else {
			stored = int64(v)
		}
	}
	return stored, falseHits
}

func kill9(p *aggProc) func() { return func() { _ = p.cmd.Process.Kill() } }

// (d) ClickHouse stopped for 15s mid-stream while events keep arriving,
// then started again on its data: the aggregator holds still (memory
// bounded), resumes, and the totals are exact.
func TestFaultClickHouseRestart(t *testing.T) {
	t.Parallel()
	brokers, _ := testenv.Services(t)
	clickhouse := testenv.StartClickHouse(t)
	env := newEnv(t, brokers, clickhouse.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 30000, now: time.Now()})
	logStream(t, s)

	const maxPending = 500
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond, MaxPending: maxPending}
	conn, err := schemas.OpenClickHouse(ctx, env.ch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	agg, stop := env.runAggregator(ctx, t, "a", cfg, conn)
	produced := env.produceSlowly(ctx, t, s.msgs, 40, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for agg.Stats().Counted < 2000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	clickhouse.Run("pause")
	down := time.Now()
	before := agg.Stats()
	var samples []uint64
	for time.Since(down) < 15*time.Second {
		time.Sleep(500 * time.Millisecond)
		samples = append(samples, agg.Stats().Counted)
	}
	clickhouse.Run("start")
	t.Logf("ClickHouse down %v: counted %d before, then %v", time.Since(down).Round(time.Millisecond), before.Counted, samples)
	last := samples[len(samples)-1]
	if grown := last - before.Counted; grown > testPartitions*maxPending {
		t.Errorf("aggregator kept consuming while ClickHouse was down; counted %d more; want at most %d", grown, testPartitions*maxPending)
	}
	if still := samples[len(samples)-10]; last != still {
		t.Errorf("aggregator still consuming after 10s without ClickHouse; counted %d then %d", still, last)
	}

	<-produced
	env.waitAggregated(ctx, t)
	stop()
	t.Logf("stats: %+v", agg.Stats())
	env.checkTotals(ctx, t, s)
}

// Kafka broker restarted mid-stream (a private broker: the shared one
// serves other tests): the aggregator rides it out, resumes, and the totals
// are exact.
func TestFaultKafkaRestart(t *testing.T) {
	t.Parallel()
	_, chAddr := testenv.Services(t)
	broker := testenv.StartKafka(t)
	env := newEnv(t, []string{broker.Addr}, chAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 20000, now: time.Now()})
	logStream(t, s)
	half := len(s.msgs) / 2

	env.produce(ctx, t, env.events, s.msgs[:half])
	agg, stop := env.runAggregator(ctx, t, "a", aggregate.Config{FlushInterval: 100 * time.Millisecond}, env.conn)
	deadline := time.Now().Add(60 * time.Second)
	for agg.Stats().Counted < 1000 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	broker.Run("pause")
	down := time.Now()
	time.Sleep(8 * time.Second)
	broker.Run("start")
	t.Logf("broker down %v; counted %d before", time.Since(down).Round(time.Millisecond), agg.Stats().Counted)
	env.produce(ctx, t, env.events, s.msgs[half:])
	env.waitAggregated(ctx, t)
	stop()
	t.Logf("stats: %+v", agg.Stats())
	env.checkTotals(ctx, t, s)
}

// (a) Repeated ids, shuffled order and late events, with no other fault:
// totals exact, every repeat counted as a duplicate.
func TestFaultRepeatsAndLateEvents(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 50000, now: time.Now()})
	logStream(t, s)
	env.produce(ctx, t, env.events, s.msgs)
	t0 := time.Now()
	agg, stop := env.runAggregator(ctx, t, "a", aggregate.Config{FlushInterval: 200 * time.Millisecond}, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	t.Logf("aggregated %d messages in %v: %+v", len(s.msgs), time.Since(t0).Round(time.Millisecond), agg.Stats())

	env.checkTotals(ctx, t, s)
	st := agg.Stats()
	if st.Counted != uint64(s.want.Distinct) || st.Duplicates != uint64(s.want.Duplicates) || st.Rejected != uint64(s.invalid) || st.Replayed != 0 {
		t.Errorf("unexpected stats; got %+v; want Counted %d, Duplicates %d, Rejected %d, Replayed 0",
			st, s.want.Distinct, s.want.Duplicates, s.invalid)
	}
}

// (c) Two aggregators in one consumer group: the second joins mid-stream,
// then the first leaves, each a rebalance that drops unflushed state:
// totals exact, the same as one aggregator's.
func TestFaultRebalance(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 30000, now: time.Now()})
	logStream(t, s)
	cfg := aggregate.Config{FlushInterval: 300 * time.Millisecond}
	conn2, err := schemas.OpenClickHouse(ctx, env.ch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()

	t0 := time.Now()
	a, stopA := env.runAggregator(ctx, t, "A", cfg, env.conn)
	produced := env.produceSlowly(ctx, t, s.msgs, 30, 18*time.Second)
	time.Sleep(6 * time.Second)
	b, stopB := env.runAggregator(ctx, t, "B", cfg, conn2)
	// Let B take its partitions and consume a while, then A leaves.
	deadline := time.Now().Add(20 * time.Second)
	for b.Stats().Counted == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	stopA()
	t.Logf("A stopped after %v: %+v; B so far: %+v", time.Since(t0).Round(time.Millisecond), a.Stats(), b.Stats())
	<-produced
	env.waitAggregated(ctx, t)
	stopB()
	sa, sb := a.Stats(), b.Stats()
	t.Logf("done in %v: A %+v; B %+v", time.Since(t0).Round(time.Millisecond), sa, sb)
	if sa.Counted == 0 || sb.Counted == 0 {
		t.Errorf("want both aggregators to count; got A %d, B %d", sa.Counted, sb.Counted)
	}
	env.checkTotals(ctx, t, s)

	// One aggregator alone over the same stream, into a database of its own.
	one := env.twin(t)
	_, stop := one.runAggregator(ctx, t, "alone", cfg, one.conn)
	one.waitAggregated(ctx, t)
	stop()
	for m := range s.want.Months {
		two, err := rollup.ReadMonth(ctx, env.conn, m, s.loc)
		if err != nil {
			t.Fatal(err)
		}
		alone, err := rollup.ReadMonth(ctx, one.conn, m, s.loc)
		if err != nil {
			t.Fatal(err)
		}
		if len(two) != len(alone) {
			t.Errorf("%s: unexpected apps; two aggregators %d; one %d", m, len(two), len(alone))
		}
		for app, u := range alone {
			if two[app] == nil {
				continue
			}
			got, want := two[app].Usage, u.Usage
			if math.Abs(float64(got.MAUEstimate)-float64(want.MAUEstimate)) > sketchTolerance(want.MAUEstimate) {
				t.Errorf("%s app %d: MAU estimate of two aggregators %d; of one %d", m, app, got.MAUEstimate, want.MAUEstimate)
			}
			got.MAUEstimate, want.MAUEstimate = 0, 0
			if got != want {
				t.Errorf("%s app %d: usage of two aggregators differs from one's\n got %+v\nwant %+v", m, app, got, want)
			}
		}
	}
}

// faultSeed returns the seed of a fault test's randomness, from
// IMMETER_FAULT_SEED or the clock, and logs it.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("IMMETER_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("IMMETER_FAULT_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (IMMETER_FAULT_SEED=%d repeats its stream and random choices)", seed, seed)
	return seed
}

// stream is a generated stream and, once it is published, its truth: per
// month and app, what the first event of every (app, id) in each
// partition's order adds up to.
type stream struct {
	loc    *time.Location
	msgs   []kafka.Message
	events map[string]schemas.Event // by message value; invalid ones are not here

	repeats, variants, late, wrong int // as generated

	// As published: the totals of the distinct (app, id) and their
	// repeats, and the invalid messages.
	want    *truth.Totals
	invalid int
}

// streamSpec describes a generated stream.
type streamSpec struct {
	seed   uint64
	events int       // distinct valid events
	now    time.Time // events fall in the previous and the current month, before now
}

// Shares of the stream.
const (
	repeatShare  = 0.05 // of events: repeated ids, 60% exact repeats, 40% with other content; 30% far later
	lateShare    = 0.2  // of events: of days before yesterday, in bursts later in the stream
	invalidShare = 0.001
)

// testApps returns apps whose keys spread perPartition to each partition.
func testApps(perPartition int) []uint32 {
	var apps []uint32
	n := map[int]int{}
	for app := uint32(1400000001); len(apps) < perPartition*testPartitions; app++ {
		p := (&kafka.Murmur2Balancer{Consistent: true}).Balance(kafka.Message{Key: []byte(strconv.FormatUint(uint64(app), 10))}, 0, 1, 2, 3)
		if n[p] < perPartition {
			n[p]++
			apps = append(apps, app)
		}
	}
	return apps
}

// genStream builds a stream of several apps over the month before spec.now
// and the current one (billing time zone +08:00). Most events are of today
// and yesterday, in time order but shuffled locally; the rest are late: of
// earlier days of the two months, in bursts of one app and day (as from an
// IM node that was cut off) arriving after later events. On top come
// repeated ids and a few invalid events.
func genStream(spec streamSpec) *stream {
	loc := time.FixedZone("+08:00", 8*3600)
	rng := mrand.New(mrand.NewPCG(spec.seed, 0x696d6d65746572))
	from := schemas.MonthOf(spec.now, loc).Prev().Start(loc)
	to := spec.now.Add(-time.Minute)
	recent := (schemas.DayOf(to, loc) - 1).Date() // yesterday 00:00 in loc
	recent = time.Date(recent.Year(), recent.Month(), recent.Day(), 0, 0, 0, 0, loc)
	apps := testApps(2)
	channels := []string{"c2c", "group", "community", "live"}

	type item struct {
		key float64
		e   schemas.Event
		raw []byte // invalid events
	}
	n := spec.events
	s := &stream{loc: loc, events: map[string]schemas.Event{}}
	items := make([]item, 0, n+n/10)
	event := func(app int, at time.Time, key float64) {
		users := 300 + 400*app
		e := schemas.Event{
			ID:   fmt.Sprintf("%x-%d", spec.seed, len(items)),
			App:  apps[app],
			Time: at,
			User: fmt.Sprintf("u%d", int(float64(users)*math.Pow(rng.Float64(), 2))),
		}
		switch r := rng.IntN(100); {
		case r < 25:
			e.Type, e.Platform = schemas.Login, "android"
		case r < 75:
			e.Type, e.Channel, e.Count = schemas.Message, channels[rng.IntN(4)], 1+rng.Int64N(5)
		case r < 87:
			e.Type, e.User, e.Group, e.GroupType = schemas.Group, "", fmt.Sprintf("g%d", rng.IntN(1000)), "Work"
			e.Op = "create"
			if rng.IntN(3) == 0 {
				e.Op = "dissolve"
			}
		default:
			e.Type, e.Media, e.Seconds = schemas.Call, "audio", rng.Int64N(1800)
			if rng.IntN(2) == 0 {
				e.Media = "video"
			}
		}
		items = append(items, item{key: key, e: e})
	}
	nRecent := n - int(float64(n)*lateShare)
	times := make([]time.Time, nRecent)
	for i := range times {
		times[i] = recent.Add(time.Duration(rng.Int64N(int64(to.Sub(recent)))))
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i, at := range times {
		event(rng.IntN(len(apps)), at, float64(i)*float64(n)/float64(nRecent)+300*rng.Float64())
	}
	oldDays := int(schemas.DayOf(recent, loc) - schemas.DayOf(from, loc))
	for len(items) < n {
		app, day := rng.IntN(len(apps)), from.AddDate(0, 0, rng.IntN(oldDays))
		key := float64(n) * (0.1 + 0.9*rng.Float64())
		for m := range min(40, n-len(items)) {
			event(app, day.Add(time.Duration(rng.Int64N(int64(24*time.Hour)))), key+float64(m)/1000)
			s.late++
		}
	}
	for range int(float64(n) * repeatShare) {
		src := items[rng.IntN(n)]
		e := src.e
		if rng.IntN(5) < 2 { // the same id with other content
			e.User = fmt.Sprintf("other-%d", rng.IntN(100))
			if e.Type == schemas.Group {
				e.User = ""
			}
			e.Count *= 2
			e.Seconds += 60
			e.Time = e.Time.Add(time.Duration(rng.IntN(72)-36) * time.Hour)
			if e.Time.After(to) || e.Time.Before(from) {
				e.Time = src.e.Time
			}
			s.variants++
		}
		s.repeats++
		key := src.key + 1 + 500*rng.Float64() // a producer's retry
		if rng.IntN(10) < 3 {
			key = src.key + 1 + (float64(n)-src.key)*rng.Float64() // a replay of old data
		}
		items = append(items, item{key: key, e: e})
	}
	bad := []string{
		`{"id":"bad-1","type":"login","app":%d,"time":"%s"}`,               // no user
		`{"id":"bad-2","type":"teleport","app":%d,"time":"%s","user":"x"}`, // no such type
		`{"id":"bad-3","type":"call","app":%d,"time":"%s","user":"u","media":"audio","seconds":-5}`,
		`not json at all %d %s`,
	}
	for i := range max(1, int(float64(n)*invalidShare)) {
		raw := fmt.Sprintf(bad[i%len(bad)], apps[0], to.Format(time.RFC3339))
		items = append(items, item{key: float64(n) * rng.Float64(), e: schemas.Event{App: apps[0]}, raw: []byte(raw)})
		s.wrong++
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].key < items[j].key })
	for _, it := range items {
		value := it.raw
		if value == nil {
			var err error
			if value, err = json.Marshal(it.e); err != nil {
				panic(err)
			}
			s.events[string(value)] = it.e
		}
		s.msgs = append(s.msgs, kafka.Message{Key: []byte(strconv.FormatUint(uint64(it.e.App), 10)), Value: value})
	}
	return s
}

// fold computes the truth from the stream as the broker holds it, each
// partition in offset order: a producer's retry may have repeated or
// reordered messages, and the truth must follow what was published.
func (s *stream) fold(ctx context.Context, t *testing.T, e *testEnv) {
	t.Helper()
	s.want, s.invalid = truth.New(s.loc), 0
	for _, m := range e.readAll(ctx, t, e.events) {
		ev, ok := s.events[string(m.Value)]
		if !ok {
			s.invalid++
			continue
		}
		s.want.Add(ev)
	}
	s.want.Finish()
}

// sketchTolerance is the error allowed to HyperLogLog estimates: 2%, well
// beyond the 0.4% standard error of p=16 (and sparse sketches of these
// sizes are nearly exact), plus one user for tiny days.
func sketchTolerance(exact uint64) float64 { return 0.02*float64(exact) + 1 }

// checkTotals compares what ClickHouse holds (rollup.ReadMonth, and the
// daily sketches) with the truth, as written and again after every merge
// ReplacingMergeTree may do: readers must not depend on merges.
func (e *testEnv) checkTotals(ctx context.Context, t *testing.T, s *stream) {
	t.Helper()
	s.fold(ctx, t, e)
	e.checkUsage(ctx, t, s, "before OPTIMIZE FINAL")
	for _, table := range []string{"daily_usage", "user_days", "user_sketches", "event_ids", "consumer_offsets"} {
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
			// PARTITION tuple() too: a replicated table's OPTIMIZE FINAL without
			// PARTITION fails on 18.16 when there is nothing to merge.
			q := "OPTIMIZE TABLE " + table + " PARTITION " + p + " FINAL"
			if err := e.conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	e.checkUsage(ctx, t, s, "after OPTIMIZE FINAL")
}

func (e *testEnv) checkUsage(ctx context.Context, t *testing.T, s *stream, stage string) {
	t.Helper()
	for m, apps := range s.want.Months {
		got, err := rollup.ReadMonth(ctx, e.conn, m, s.loc)
		if err != nil {
			t.Fatal(err)
		}
		for app := range got {
			if apps[app] == nil {
				t.Errorf("%s: %s: unexpected usage of app %d: %+v", stage, m, app, got[app].Usage)
			}
		}
		for app, want := range apps {
			if got[app] == nil {
				t.Errorf("%s: %s: no usage of app %d; want %+v", stage, m, app, want.Usage)
				continue
			}
			u := got[app].Usage
			est := u.MAUEstimate
			u.MAUEstimate = 0
			if u != want.Usage {
				t.Errorf("%s: %s app %d: unexpected usage\n got %+v\nwant %+v", stage, m, app, u, want.Usage)
			}
			if math.Abs(float64(est)-float64(want.Usage.MAU)) > sketchTolerance(want.Usage.MAU) {
				t.Errorf("%s: %s app %d: unexpected MAU estimate; got %d; want %d ± 2%%", stage, m, app, est, want.Usage.MAU)
			}
		}
	}
	// Daily sketches: the union of a day's rows estimates its DAU.
	type appDay struct {
		app uint32
		day schemas.Day
	}
	sketches := map[appDay]*hyperloglog.Sketch{}
	rows, err := e.conn.Query(ctx, "SELECT app, day, sketch FROM user_sketches")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k appDay
		var day time.Time
		var blob string
		if err := rows.Scan(&k.app, &day, &blob); err != nil {
			t.Fatal(err)
		}
		k.day = schemas.DayOf(day, time.UTC)
		var sk hyperloglog.Sketch
		if err := sk.UnmarshalBinary([]byte(blob)); err != nil {
			t.Fatal(err)
		}
		if sketches[k] == nil {
			sketches[k] = &sk
		} else if err := sketches[k].Merge(&sk); err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()
	bad := 0
	for _, apps := range s.want.Months {
		for app, tr := range apps {
			for day, users := range tr.DayUsers {
				var est uint64
				if sk := sketches[appDay{app, day}]; sk != nil {
					est = sk.Estimate()
				}
				if n := uint64(len(users)); math.Abs(float64(est)-float64(n)) > sketchTolerance(n) {
					if bad++; bad <= 5 {
						t.Errorf("%s: app %d day %s: unexpected DAU estimate; got %d; want %d ± 2%%", stage, app, day, est, n)
					}
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d days with a bad DAU estimate in all", stage, bad)
	}
}

// A group with offsets committed on Kafka but no position stored in
// ClickHouse (a new database, or a crash before a partition's first flush
// with the offsets then moved by an operator) must not skip what was never
// aggregated: every partition is read from its first offset.
func TestKafkaOffsetsWithoutStoredPositionSkipNothing(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := genStream(streamSpec{seed: faultSeed(t), events: 5000, now: time.Now()})
	logStream(t, s)
	env.produce(ctx, t, env.events, s.msgs)
	env.resetKafkaOffsets(ctx, t, env.endOffsets(ctx, t, env.events))
	agg, stop := env.runAggregator(ctx, t, "a", aggregate.Config{FlushInterval: 200 * time.Millisecond}, env.conn)
	env.waitAggregated(ctx, t)
	stop()
	env.checkTotals(ctx, t, s)
	if st := agg.Stats(); st.Counted != uint64(s.want.Distinct) {
		t.Errorf("unexpected events counted; got %d; want %d (%+v)", st.Counted, s.want.Distinct, st)
	}
}

package aggregate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/internal/testenv/truth"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// clusterScript runs .ci/cluster.sh with args (pause|resume kafka|clickhouse N).
func clusterScript(t *testing.T, args ...string) {
	t.Helper()
	c := exec.Command("bash", append([]string{filepath.Join(testenv.Root(t), ".ci", "cluster.sh")}, args...)...)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("cluster.sh %v: %v\n%s", args, err, out)
	}
	t.Logf("cluster.sh %v: %s", args, bytes.TrimSpace(out))
}

// newClusterEnv is newEnv on the replicated setup: topics with replication
// factor 3 (min.insync.replicas 2, the brokers' default) and a database ON
// CLUSTER of ClickHouse replicas.
func newClusterEnv(t *testing.T, brokers []string, chAddr, cluster string) *testEnv {
	t.Helper()
	return makeEnv(t, brokers, 3, schemas.ClickHouseConfig{Addr: chAddr, Username: "default", Cluster: cluster}, 3*time.Minute)
}

// checkReplicated fails unless every table of the env's database is
// replicated on every replica and the topic has 3 replicas per partition
// and min.insync.replicas 2.
func (e *testEnv) checkReplicated(ctx context.Context, t *testing.T, topic string) {
	t.Helper()
	for _, addr := range e.ch.Addrs() {
		one := e.ch
		one.Addr = addr
		conn, err := schemas.OpenClickHouse(ctx, one)
		if err != nil {
			t.Fatalf("replica %s: %v", addr, err)
		}
		rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", e.ch.Database)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var name, engine string
			if err := rows.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			n++
			if engine != "View" && !strings.HasPrefix(engine, "Replicated") {
				t.Errorf("replica %s: table %s: engine %s; want Replicated*", addr, name, engine)
			}
		}
		rows.Close()
		conn.Close()
		if n < 10 {
			t.Errorf("replica %s: %d tables in %s; want all of the migrations'", addr, n, e.ch.Database)
		}
	}
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range md.Topics[0].Partitions {
		if len(p.Replicas) != 3 {
			t.Errorf("%s/%d: %d replicas; want 3", topic, p.ID, len(p.Replicas))
		}
	}
	res, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"min.insync.replicas"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		for _, ce := range r.ConfigEntries {
			if ce.ConfigValue != "2" {
				t.Errorf("%s: %s = %s; want 2", topic, ce.ConfigName, ce.ConfigValue)
			}
		}
	}
}

// produceUntilDone writes msgs like produce, but keeps retrying what failed
// until ctx ends: a broker of the cluster may be down.
func (e *testEnv) produceUntilDone(ctx context.Context, t *testing.T, topic string, msgs []kafka.Message) {
	tr := &kafka.Transport{MetadataTTL: 500 * time.Millisecond}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 1000, Transport: tr,
		MaxAttempts: 3, WriteBackoffMin: 100 * time.Millisecond, WriteBackoffMax: time.Second}
	defer w.Close()
	for attempt := 1; ; attempt++ {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil || ctx.Err() != nil {
			return
		}
		failed := testenv.Unwritten(msgs, err)
		if attempt%5 == 1 {
			t.Logf("produce: %d of %d messages again: %v", len(failed), len(msgs), err)
		}
		msgs = failed
		time.Sleep(500 * time.Millisecond)
	}
}

// finalRecords publishes the final records of the stream's months through
// the env's ClickHouse and billingTopic, and returns them as stored, by
// app and month, with generated_at cleared; it checks that the topic holds
// the same records.
func (e *testEnv) finalRecords(ctx context.Context, t *testing.T, s *stream, billingTopic string) map[string]schemas.BillingRecord {
	t.Helper()
	cfg := rollup.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Location = e.brokers, billingTopic, s.loc
	r, err := rollup.New(cfg, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]schemas.BillingRecord{}
	for m, apps := range s.want.Months {
		// The stream's months include the open one: finalized anyway, on
		// both setups alike.
		if _, err := r.Publish(ctx, m, rollup.ForceFinalOpen); err != nil {
			t.Fatalf("publish %s: %v", m, err)
		}
		for app := range apps {
			rec, err := rollup.Statement(ctx, e.conn, app, m)
			if err != nil {
				t.Fatalf("statement %d %s: %v", app, m, err)
			}
			rec.GeneratedAt = time.Time{}
			out[string(rollupKey(app, m))] = rec
		}
	}
	published := map[string]bool{}
	for _, msg := range e.readAll(ctx, t, billingTopic) {
		var rec schemas.BillingRecord
		if err := json.Unmarshal(msg.Value, &rec); err != nil {
			t.Fatalf("%s: %v", billingTopic, err)
		}
		rec.GeneratedAt = time.Time{}
		want, ok := out[string(msg.Key)]
		if !ok || !jsonEqual(t, rec, want) {
			t.Errorf("%s: record %s differs from the stored one:\n got %+v\nwant %+v", billingTopic, msg.Key, rec, want)
		}
		published[string(msg.Key)] = true
	}
	if len(published) != len(out) {
		t.Errorf("%s: records of %d app-months; want %d", billingTopic, len(published), len(out))
	}
	return out
}

// rollupKey is the billing topic's key of a record.
func rollupKey(app uint32, m schemas.Month) []byte { return fmt.Appendf(nil, "%d:%s", app, m) }

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return jsonString(a) == jsonString(b)
}

// Replicated setup (issue 10): two ClickHouse replicas of one shard and
// three Kafka brokers (topics with replication factor 3, min.insync.replicas
// 2). While events stream, one broker and one ClickHouse replica (the one
// the connections prefer) are stopped for 15 s and started again: every
// total is exact, and the final records equal those of a single-node run of
// the same stream.
func TestClusterFaults(t *testing.T) {
	brokers, chAddr, cluster := testenv.Cluster(t)
	singleBrokers, singleCH := testenv.Services(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env := newClusterEnv(t, brokers, chAddr, cluster)
	env.checkReplicated(ctx, t, env.events)
	s := genStream(streamSpec{seed: faultSeed(t), events: 30000, now: time.Now()})
	logStream(t, s)

	agg, stop := env.runAggregator(ctx, t, "a", aggregate.Config{FlushInterval: 100 * time.Millisecond}, env.conn)
	// The alerter runs on the cluster through the faults: after its first
	// load, every check reads incrementally, above the partitions' stored
	// positions (rollup/alerts.go, readUsage), which relies on quorum inserts
	// and sequentially consistent reads. Its alerts are compared below with
	// those of one full check on one node.
	alertsTopic := testenv.NewNames().Billing + ".alerts"
	if err := ingest.EnsureTopics(ctx, env.brokers, 1, 3, alertsTopic); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, env.brokers, alertsTopic)
	alertsCtx, stopAlerts := context.WithCancel(ctx)
	alertsDone := runAlerter(alertsCtx, t, env.brokers, alertsTopic, s.loc, env.conn)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		const chunks = 40
		size := (len(s.msgs) + chunks - 1) / chunks
		for i := 0; i < len(s.msgs) && ctx.Err() == nil; i += size {
			env.produceUntilDone(ctx, t, env.events, s.msgs[i:min(i+size, len(s.msgs))])
			time.Sleep(time.Second)
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for agg.Stats().Counted < 3000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	// IMMETER_CLUSTER_FAULTS=kafka or =clickhouse harms only one side.
	faults := os.Getenv("IMMETER_CLUSTER_FAULTS")
	if faults == "" {
		faults = "kafka,clickhouse"
	}
	for _, kind := range strings.Split(faults, ",") {
		clusterScript(t, "pause", kind, "1")
	}
	down := time.Now()
	before := agg.Stats().Counted
	time.Sleep(15 * time.Second)
	during := agg.Stats().Counted
	for _, kind := range strings.Split(faults, ",") {
		clusterScript(t, "resume", kind, "1")
	}
	t.Logf("%s node 1 down %v: counted %d before, %d at the end", faults, time.Since(down).Round(time.Millisecond), before, during)
	select {
	case <-produced:
	case <-ctx.Done():
		t.Fatal("producing did not finish in time")
	}
	env.waitAggregated(ctx, t)
	stop()
	t.Logf("stats: %+v", agg.Stats())
	env.checkTotals(ctx, t, s)
	time.Sleep(3 * time.Second) // checks after the last flush
	stopAlerts()
	<-alertsDone

	// The same stream, as the cluster's topic holds it (the producer may
	// have sent some messages twice while a broker was down), on one node.
	single := newEnv(t, singleBrokers, singleCH)
	var msgs []kafka.Message
	for _, m := range env.readAll(ctx, t, env.events) {
		msgs = append(msgs, kafka.Message{Key: m.Key, Value: m.Value, Headers: m.Headers})
	}
	single.produce(ctx, t, single.events, msgs)
	_, stopSingle := single.runAggregator(ctx, t, "single", aggregate.Config{FlushInterval: 100 * time.Millisecond}, single.conn)
	single.waitAggregated(ctx, t)
	stopSingle()

	billing := testenv.NewNames().Billing
	if err := ingest.EnsureTopics(ctx, env.brokers, testPartitions, 3, billing); err != nil {
		t.Fatal(err)
	}
	if err := ingest.EnsureTopics(ctx, single.brokers, testPartitions, 1, billing); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, env.brokers, billing)
	testenv.DeleteTopicsAtEnd(t, single.brokers, billing)
	got := env.finalRecords(ctx, t, s, billing)
	want := single.finalRecords(ctx, t, s, billing)
	if len(got) != len(want) {
		t.Errorf("final records: %d on the cluster; want %d as on one node", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !jsonEqual(t, g, w) {
			t.Errorf("final record %s on the cluster differs from one node's:\n got %+v\nwant %+v", k, g, w)
		}
	}
	t.Logf("%d final records equal on the cluster and on one node", len(want))

	// One full check on one node: the alerts the cluster's incremental
	// checks must have issued, no more, no fewer.
	if err := ingest.EnsureTopics(ctx, single.brokers, 1, 1, alertsTopic); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, single.brokers, alertsTopic)
	acfg := rollup.DefaultAlertConfig()
	acfg.Brokers, acfg.Topic, acfg.Location = single.brokers, alertsTopic, s.loc
	a, err := rollup.NewAlerter(acfg, single.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
	gotAlerts, wantAlerts := alertValues(ctx, t, env.conn), alertValues(ctx, t, single.conn)
	if len(wantAlerts) == 0 {
		t.Fatal("the stream crosses no alert level on one node: the comparison proves nothing")
	}
	// A day's net group increase falls when groups are dissolved: the
	// cluster's checks may have seen it at a level it no longer holds at
	// the end, which one full check cannot see. Such an alert must be of
	// a figure the day reached at some point of the stream, as folded in
	// the topic's order.
	peaks := truth.New(s.loc)
	for _, m := range msgs {
		if ev, ok := s.events[string(m.Value)]; ok {
			peaks.Add(ev)
		}
	}
	extra := 0
	for id, g := range gotAlerts {
		if _, ok := wantAlerts[id]; ok {
			continue
		}
		f := strings.Split(id, ":") // app:kind:period:edition:level
		var app uint32
		var level uint64
		day, err := time.Parse(time.DateOnly, f[2])
		if _, err2 := fmt.Sscan(f[0]+" "+f[4], &app, &level); err != nil || err2 != nil || f[1] != "daily_net_groups" {
			t.Errorf("alert %s (value %d) issued on the cluster, not by one full check on one node", id, g[0])
			continue
		}
		d := schemas.DayOf(day, time.UTC)
		peak := peaks.App(app, d.Month()).PeakNet[d]
		if g[0] > peak || g[0]*100 < int64(level)*g[1] {
			t.Errorf("alert %s: value %d (limit %d) on the cluster; the day's net increase peaked at %d", id, g[0], g[1], peak)
		}
		extra++
	}
	missing := 0
	for id := range wantAlerts {
		if _, ok := gotAlerts[id]; !ok {
			t.Errorf("alert %s of one full check on one node was not issued on the cluster", id)
			missing++
		}
	}
	if missing == 0 {
		t.Logf("%d alerts of one full check on one node issued on the cluster (incremental checks), and %d more of daily net increases that fell again, each of a figure the day reached", len(wantAlerts), extra)
	}
	if n := testenv.Count(ctx, t, env.brokers, alertsTopic); n < int64(len(wantAlerts)) {
		t.Errorf("%d alerts on the cluster's alerts topic; want at least %d", n, len(wantAlerts))
	}
}

// runAlerter runs an alerter checking every 200 ms, with no sweep during
// the test, until ctx ends; the channel closes when it returned.
func runAlerter(ctx context.Context, t *testing.T, brokers []string, topic string, loc *time.Location, conn driver.Conn) <-chan struct{} {
	t.Helper()
	cfg := rollup.DefaultAlertConfig()
	cfg.Brokers, cfg.Topic, cfg.Location = brokers, topic, loc
	cfg.Interval, cfg.Sweep = 200*time.Millisecond, time.Hour
	a, err := rollup.NewAlerter(cfg, conn)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer a.Close()
		_ = a.Run(ctx)
	}()
	return done
}

// sqlTestAlertValues reads each stored alert's value and limit (an alert
// stored twice has one content).
const sqlTestAlertValues = "SELECT id, any(value), toInt64(any(quota)) FROM alerts GROUP BY id"

// alertValues returns the value and limit of each alert stored in conn's
// database, by id.
func alertValues(ctx context.Context, t *testing.T, conn driver.Conn) map[string][2]int64 {
	t.Helper()
	rows, err := conn.Query(ctx, sqlTestAlertValues)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int64{}
	for rows.Next() {
		var id string
		var value, limit int64
		if err := rows.Scan(&id, &value, &limit); err != nil {
			t.Fatal(err)
		}
		out[id] = [2]int64{value, limit}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

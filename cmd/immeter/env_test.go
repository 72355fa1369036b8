package main

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// testPartitions is the partition count of every test topic.
const testPartitions = 4

// testEnv is a private corner of the real Kafka broker and ClickHouse
// server: topics, a consumer group and a database of its own.
type testEnv struct {
	brokers              []string
	events, dlq, billing string
	group                string
	ch                   schemas.ClickHouseConfig
	conn                 driver.Conn
}

// integration returns a fresh testEnv on the configured services
// (testenv.Services: skipped, or failed under IMMETER_INTEGRATION=1, when
// they are not configured).
func integration(t *testing.T) *testEnv {
	t.Helper()
	brokers, chAddr := testenv.Services(t)
	n := testenv.NewNames()
	e := &testEnv{brokers: brokers, events: n.Events, dlq: n.DLQ, billing: n.Billing, group: n.Group,
		ch: schemas.ClickHouseConfig{Addr: chAddr, Database: n.Database, Username: "default"}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, 1, e.events, e.dlq, e.billing); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, e.brokers, e.events, e.dlq, e.billing)
	conn, err := schemas.OpenClickHouse(ctx, e.ch)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	testenv.DropDatabaseAtEnd(t, conn, e.ch.Addr, e.ch.Database, "")
	return e
}

// produce writes msgs to topic, keyed as given, acknowledged by all replicas.
func (e *testEnv) produce(ctx context.Context, t *testing.T, topic string, msgs []kafka.Message) {
	t.Helper()
	if err := testenv.Produce(ctx, t, e.brokers, topic, msgs); err != nil {
		t.Fatal(err)
	}
}

// endOffsets returns the next offset of every partition of topic.
func (e *testEnv) endOffsets(ctx context.Context, t *testing.T, topic string) map[int]int64 {
	t.Helper()
	end := testenv.EndOffsets(ctx, t, e.brokers, topic)
	if len(end) != testPartitions {
		t.Fatalf("end offsets of %s: %v", topic, end)
	}
	return end
}

// waitAggregated waits until ClickHouse says every message of topic now on
// the broker has been aggregated.
func (e *testEnv) waitAggregated(ctx context.Context, t *testing.T, topic string) {
	t.Helper()
	testenv.WaitProgress(ctx, t, e.endOffsets(ctx, t, topic), func(ctx context.Context) (map[int]int64, error) {
		return aggregate.Progress(ctx, e.conn, e.group, topic)
	})
}

// readAll reads exactly n messages from all partitions of topic, failing if
// more or fewer are there.
func (e *testEnv) readAll(ctx context.Context, t *testing.T, topic string, n int) []kafka.Message {
	t.Helper()
	var total int64
	for _, o := range e.endOffsets(ctx, t, topic) {
		total += o
	}
	if total != int64(n) {
		t.Fatalf("unexpected message count on %s; got %d; want %d", topic, total, n)
	}
	return testenv.ReadAll(ctx, t, e.brokers, topic)
}

// shiftedClock returns a clock that starts at base and runs in real time.
func shiftedClock(base time.Time) func() time.Time {
	start := time.Now()
	return func() time.Time { return base.Add(time.Since(start)) }
}

// testAggregateConfig returns the aggregator defaults on the env's topics
// and group, changed by set.
func testAggregateConfig(e *testEnv, set func(*aggregate.Config)) aggregate.Config {
	c := aggregate.DefaultConfig()
	c.Brokers, c.Topic, c.DLQTopic, c.Group = e.brokers, e.events, e.dlq, e.group
	set(&c)
	return c
}

// testRollupConfig returns the rollup defaults on the env's billing topic,
// changed by set.
// startAggregator runs an aggregator on env's events topic and database,
// with the test defaults changed by set, until the test ends.
func startAggregator(ctx context.Context, t *testing.T, env *testEnv, set func(*aggregate.Config)) {
	t.Helper()
	agg, err := aggregate.New(testAggregateConfig(env, set), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agg.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
}

func testRollupConfig(e *testEnv, set func(*rollup.Config)) rollup.Config {
	c := rollup.DefaultConfig()
	c.Brokers, c.Topic = e.brokers, e.billing
	set(&c)
	return c
}

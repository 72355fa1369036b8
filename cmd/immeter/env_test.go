package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
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

// integration returns a fresh testEnv, or skips the test when the services
// are not configured. With IMMETER_INTEGRATION=1 (make test) missing
// services fail the test instead.
func integration(t *testing.T) *testEnv {
	t.Helper()
	brokerList, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokerList == "" || chAddr == "" {
		if os.Getenv("IMMETER_INTEGRATION") == "1" {
			t.Fatal("IMMETER_INTEGRATION=1 but KAFKA_BROKERS or CLICKHOUSE_ADDR is unset")
		}
		t.Skip("integration test: set KAFKA_BROKERS and CLICKHOUSE_ADDR (make test starts both)")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	sfx := hex.EncodeToString(b[:])
	e := &testEnv{
		brokers: brokers(brokerList),
		events:  "test.events." + sfx,
		dlq:     "test.dlq." + sfx,
		billing: "test.billing." + sfx,
		group:   "test-" + sfx,
		ch:      schemas.ClickHouseConfig{Addr: chAddr, Database: "test_" + sfx, Username: "default"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, 1, e.events, e.dlq, e.billing); err != nil {
		t.Fatal(err)
	}
	conn, err := schemas.OpenClickHouse(ctx, e.ch)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	t.Cleanup(func() {
		if !t.Failed() {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+e.ch.Database)
		} else {
			t.Logf("kept ClickHouse database %s for inspection", e.ch.Database)
		}
		conn.Close()
		c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.events, e.dlq, e.billing}})
	})
	return e
}

// produce writes msgs to topic, keyed as given, acknowledged by all replicas.
func (e *testEnv) produce(ctx context.Context, t *testing.T, topic string, msgs []kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 1000,
		Transport: &kafka.Transport{}} // its own metadata cache: the topic is new
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// endOffsets returns the next offset of every partition of topic.
func (e *testEnv) endOffsets(ctx context.Context, t *testing.T, topic string) map[int]int64 {
	t.Helper()
	end, err := ingest.EndOffsets(ctx, e.brokers, topic)
	if err != nil || len(end) != testPartitions {
		t.Fatalf("end offsets of %s: %v %v", topic, end, err)
	}
	return end
}

// waitAggregated waits until ClickHouse says every message of topic now on
// the broker has been aggregated.
func (e *testEnv) waitAggregated(ctx context.Context, t *testing.T, topic string) {
	t.Helper()
	end := e.endOffsets(ctx, t, topic)
	for {
		got, err := aggregate.Progress(ctx, e.conn, e.group, topic)
		done := 0
		for p, want := range end {
			if err == nil && got[p] >= want {
				done++
			}
		}
		if done == len(end) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("aggregation did not reach the end offsets %v in time; got %v (%v)", end, got, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readAll reads exactly n messages from all partitions of topic, failing if
// more or fewer are there.
func (e *testEnv) readAll(ctx context.Context, t *testing.T, topic string, n int) []kafka.Message {
	t.Helper()
	end := e.endOffsets(ctx, t, topic)
	var total int64
	for _, o := range end {
		total += o
	}
	if len(end) != testPartitions || total != int64(n) {
		t.Fatalf("unexpected message count on %s; got %d; want %d", topic, total, n)
	}
	var out []kafka.Message
	for p, last := range end {
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset+1 >= last {
				break
			}
		}
		r.Close()
	}
	return out
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
func testRollupConfig(e *testEnv, set func(*rollup.Config)) rollup.Config {
	c := rollup.DefaultConfig()
	c.Brokers, c.Topic = e.brokers, e.billing
	set(&c)
	return c
}

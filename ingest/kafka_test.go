package ingest

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/immeter/immeter/internal/testenv"
)

// Tests that need Kafka run twice through onBrokers: against the embedded
// fake broker kfake, and against the real broker named by KAFKA_BROKERS
// (bash .ci/kafka.sh start runs one on 127.0.0.1:19092).

// testKafka is a broker a test publishes to.
type testKafka struct {
	brokers []string
	fake    *kfake.Cluster // nil for the real broker
}

// onBrokers runs f as subtest "kfake" and as subtest "kafka" (the real broker,
// skipped unless configured).
func onBrokers(t *testing.T, f func(t *testing.T, k *testKafka)) {
	t.Helper()
	t.Run("kfake", func(t *testing.T) { f(t, newFakeKafka(t)) })
	t.Run("kafka", func(t *testing.T) { f(t, realKafka(t)) })
}

func newFakeKafka(t testing.TB) *testKafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &testKafka{brokers: c.ListenAddrs(), fake: c}
}

// realKafka returns the real broker of KAFKA_BROKERS, or skips the test
// (fails it under IMMETER_INTEGRATION=1) when none is configured.
func realKafka(t testing.TB) *testKafka {
	t.Helper()
	return &testKafka{brokers: testenv.Kafka(t)}
}

var nonTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// topic creates a topic of its own for the test (3 partitions), removed at
// the end on the real broker.
func (k *testKafka) topic(t testing.TB) string {
	t.Helper()
	name := "immeter-test-" + nonTopicChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 200 {
		name = name[:200]
	}
	name += "-" + NewID()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, k.brokers, 3, 1, name); err != nil {
		t.Fatalf("creating topic: %v", err)
	}
	if k.fake == nil {
		testenv.DeleteTopicsAtEnd(t, k.brokers, name)
	}
	return name
}

// producer starts a producer on topic, closed at the end of the test.
func (k *testKafka) producer(t testing.TB, topic string, tune func(*ProducerConfig)) *Producer {
	t.Helper()
	cfg := DefaultProducerConfig()
	cfg.Brokers, cfg.Topic = k.brokers, topic
	if tune != nil {
		tune(&cfg)
	}
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// count returns how many records topic holds.
func (k *testKafka) count(t testing.TB, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return testenv.Count(ctx, t, k.brokers, topic)
}

// read returns every record of topic, in no particular order across
// partitions.
func (k *testKafka) read(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	want := k.count(t, topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for int64(len(recs)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: got %d records of %d: %v", topic, len(recs), want, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("reading %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string { return testenv.FreeAddr(t) }

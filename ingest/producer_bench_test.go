package ingest

import (
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/immeter/immeter/internal/testenv"
)

// benchKafka returns the real broker when IMMETER_INTEGRATION=1 and
// KAFKA_BROKERS are set, else a kfake cluster that discards what it gets.
func benchKafka(b *testing.B) *testKafka {
	b.Helper()
	if brokers, _ := testenv.Configured(); testenv.Integration() && len(brokers) > 0 {
		return &testKafka{brokers: brokers}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.BlackholeProduce())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return &testKafka{brokers: c.ListenAddrs(), fake: c}
}

// BenchmarkPublish is the library's publish rate: b.N events through
// Publish and a flushing Close, acknowledged by all in-sync replicas.
func BenchmarkPublish(b *testing.B) {
	k := benchKafka(b)
	topic := k.topic(b)
	b.ReportAllocs()
	events := make([]string, 1000)
	for i := range events {
		events[i] = "u" + strconv.Itoa(i)
	}
	cfg := DefaultProducerConfig()
	cfg.Brokers, cfg.Topic, cfg.Block = k.brokers, topic, true
	p, err := NewProducer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		e := NewMessage(1400000001+uint32(i%20), events[i%len(events)], "c2c", 1, at)
		if err := p.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPublishEncode is the CPU cost of one event in Publish before
// Kafka: id, contract check, JSON.
func BenchmarkPublishEncode(b *testing.B) {
	p := &Producer{}
	e := NewMessage(1400000001, "user-1", "group", 1, at)
	b.ReportAllocs()
	for b.Loop() {
		e.ID = ""
		if _, err := p.message(&e, true); err != nil {
			b.Fatal(err)
		}
	}
}

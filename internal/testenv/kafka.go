package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// DeleteTopicsAtEnd deletes topics from the brokers at the end of the test.
func DeleteTopicsAtEnd(t testing.TB, brokers []string, topics ...string) {
	t.Cleanup(func() { DeleteTopics(t, brokers, topics...) })
}

// DeleteTopics deletes topics from the brokers, logging a failure.
func DeleteTopics(t testing.TB, brokers []string, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	if _, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics}); err != nil {
		t.Logf("deleting topics %v: %v", topics, err)
	}
}

// Produce writes msgs to topic, keyed as given (murmur2, as the producer
// library partitions), acknowledged by all in-sync replicas. Messages the
// broker refused (a new topic may not be known yet) are sent again, up to
// 5 times; it returns the error of the last attempt, or ctx's.
func Produce(ctx context.Context, t testing.TB, brokers []string, topic string, msgs []kafka.Message) error {
	t.Helper()
	// Metadata of its own, soon stale: the shared transport's may be older
	// than the test's topics.
	tr := &kafka.Transport{MetadataTTL: 500 * time.Millisecond}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 1000, Transport: tr}
	defer w.Close()
	for attempt := 1; ; attempt++ {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		failed := Unwritten(msgs, err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(failed) == 0 || attempt == 5 {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		t.Logf("produce: %d of %d messages again: %v", len(failed), len(msgs), err)
		msgs = failed
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
}

// Unwritten returns the messages of msgs that a kafka.Writer's err says
// were not written: all of them unless err lists each message's error.
func Unwritten(msgs []kafka.Message, err error) []kafka.Message {
	var werr kafka.WriteErrors
	if !errors.As(err, &werr) {
		return msgs
	}
	var failed []kafka.Message
	for i, err := range werr {
		if err != nil {
			failed = append(failed, msgs[i])
		}
	}
	return failed
}

// EndOffsets returns the next offset of every partition of topic, read by a
// client of its own (not the product's ingest.EndOffsets, which tests check).
func EndOffsets(ctx context.Context, t testing.TB, brokers []string, topic string) map[int]int64 {
	t.Helper()
	// A transport of its own: the default one caches metadata for seconds.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, tp := range md.Topics {
		if tp.Error != nil || len(tp.Partitions) == 0 {
			t.Fatalf("metadata of %s: %d partitions, error %v", topic, len(tp.Partitions), tp.Error)
		}
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafka.LastOffsetOf(p.ID))
		}
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("offsets of %s: %v", topic, err)
	}
	end := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, p.Partition, p.Error)
		}
		end[p.Partition] = p.LastOffset
	}
	return end
}

// Count returns how many messages topic holds: the sum of its end offsets
// (the test topics are fresh and never compacted).
func Count(ctx context.Context, t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	var n int64
	for _, o := range EndOffsets(ctx, t, brokers, topic) {
		n += o
	}
	return n
}

// ReadAll reads every message now in topic, each partition in offset order.
func ReadAll(ctx context.Context, t testing.TB, brokers []string, topic string) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p, last := range EndOffsets(ctx, t, brokers, topic) {
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p,
			MaxWait: 100 * time.Millisecond, QueueCapacity: 10000})
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

// WaitProgress waits until progress reports every partition of end at or
// past its offset there: for example until ClickHouse says the aggregator
// has stored the end offsets of the events topic.
func WaitProgress(ctx context.Context, t testing.TB, end map[int]int64, progress func(context.Context) (map[int]int64, error)) {
	t.Helper()
	for {
		got, err := progress(ctx)
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

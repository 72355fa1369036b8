package ingest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// TestCloseWaitsForReports: Close returns only once every report of an
// event to OnError has returned, also when it gives up on events at its
// deadline (then it does not wait for the Kafka writer). On the real broker,
// a topic whose max.message.bytes is below any event: app A's two events
// fill a batch (BatchSize 2) that the broker refuses for good, and
// OnError's report of the first one blocks on the writer's goroutine; app
// B's event waits in its batch (Linger 30s). Close, with a 300ms deadline,
// gives B's event up and must still wait for A's report. Before the
// barrier (commit 1702af3), it returned while the report was running.
func TestCloseWaitsForReports(t *testing.T) {
	k := realKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := "immeter-test-close-reports-" + NewID()[:8]
	c := &kafka.Client{Addr: kafka.TCP(k.brokers...)}
	res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "64"}},
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	testenv.DeleteTopicsAtEnd(t, k.brokers, topic)
	if err := EnsureTopics(ctx, k.brokers, 2, 1, topic); err != nil { // waits for the leaders
		t.Fatal(err)
	}
	// Two apps on different partitions.
	partition := func(app uint32) int {
		return (&kafka.Murmur2Balancer{Consistent: true}).Balance(kafka.Message{Key: strconv.AppendUint(nil, uint64(app), 10)}, 0, 1)
	}
	appA, appB := uint32(1400000001), uint32(1400000002)
	for partition(appB) == partition(appA) {
		appB++
	}

	entered, release := make(chan struct{}), make(chan struct{})
	var blocked atomic.Bool // the blocking report has returned
	var mu sync.Mutex
	reports := map[string]error{}
	p, err := NewProducer(ProducerConfig{Brokers: k.brokers, Topic: topic, BatchSize: 2, Linger: 30 * time.Second,
		OnError: func(e schemas.Event, err error) {
			mu.Lock()
			reports[e.ID] = err
			mu.Unlock()
			if e.ID == "a1" {
				close(entered)
				<-release
				blocked.Store(true)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []schemas.Event{NewLogin(appA, "u1", at), NewLogin(appA, "u2", at), NewLogin(appB, "u3", at)} {
		e.ID = map[string]string{"u1": "a1", "u2": "a2", "u3": "b1"}[e.User]
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatalf("a1 not reported in 20s (reports %v)", reports)
	}
	type result struct {
		err      error
		returned bool // the blocking report had returned when Close did
	}
	closed := make(chan result, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer ccancel()
		err := p.Close(cctx)
		closed <- result{err, blocked.Load()}
	}()
	select {
	case r := <-closed:
		close(release)
		t.Fatalf("Close returned (%v) while OnError was still reporting a1", r.err)
	case <-time.After(2 * time.Second):
	}
	close(release)
	var r result
	select {
	case r = <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return in 10s after the report of a1 returned")
	}
	if !r.returned || !errors.Is(r.err, ErrUndelivered) {
		t.Errorf("unexpected Close: error %v, report returned before it %v; want ErrUndelivered, true", r.err, r.returned)
	}
	mu.Lock()
	defer mu.Unlock()
	var tooLarge kafka.Error
	if len(reports) != 3 || !errors.As(reports["a1"], &tooLarge) || tooLarge != kafka.MessageSizeTooLarge ||
		!errors.Is(reports["a2"], ErrUndelivered) || !errors.Is(reports["b1"], ErrUndelivered) {
		t.Errorf("unexpected reports %v; want a1 (message too large), a2 and b1, all undelivered", reports)
	}
	if st := p.Stats(); st.Failed != 3 || st.Delivered != 0 || st.Pending != 0 {
		t.Errorf("unexpected stats %+v; want 3 failed", st)
	}
}

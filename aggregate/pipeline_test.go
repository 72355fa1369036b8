package aggregate_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
)

// TestFoldsWhileFlushing: a partition's flush is written while its next
// events are folded. The first INSERT INTO daily_usage is held; meanwhile
// 100 more logins and 10 resent ids of the held flush are produced, and
// the aggregator folds them all (counted and duplicates) before the held
// insert is let go; the flush that carries them waits for the held one.
// Then ClickHouse holds exactly 200 logins and users, 200 ids and 10
// duplicates. Before, the partition stopped folding until its flush was
// written, and the test failed waiting for the count.
func TestFoldsWhileFlushing(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	now := time.Now().Add(-time.Minute).Format(time.RFC3339Nano)
	key := []byte("1400000001") // one key: one partition
	logins := func(from, to int) []kafka.Message {
		var msgs []kafka.Message
		for i := from; i < to; i++ {
			msgs = append(msgs, kafka.Message{Key: key, Value: fmt.Appendf(nil,
				`{"id":"e%d","type":"login","app":1400000001,"time":%q,"user":"u%d"}`, i, now, i)})
		}
		return msgs
	}
	env.produce(ctx, t, env.events, logins(0, 100))

	gate := &gateConn{Conn: env.conn, held: make(chan struct{}), release: make(chan struct{})}
	agg, stop := env.runAggregator(ctx, t, "pipelined", aggregate.Config{FlushInterval: 100 * time.Millisecond}, gate)
	defer stop()
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()
	select {
	case <-gate.held:
	case <-time.After(time.Minute):
		t.Fatal("no INSERT INTO daily_usage in a minute")
	}
	// The held flush may carry fewer than the first 100, which then fold
	// meanwhile.
	waitStats := func(counted, duplicates uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for s := agg.Stats(); s.Counted != counted || s.Duplicates != duplicates; s = agg.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("with the first flush held: counted %d, duplicates %d after 30s; want %d and %d: folding waits for the flush",
					s.Counted, s.Duplicates, counted, duplicates)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitStats(100, 0)
	env.produce(ctx, t, env.events, append(logins(100, 200), logins(0, 10)...))
	waitStats(200, 10)
	stored, err := env.aggregated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for p, next := range stored {
		if next != 0 {
			t.Fatalf("partition %d stored position %d while its first insert was held; want none", p, next)
		}
	}
	released = true
	close(gate.release)
	env.waitAggregated(ctx, t)
	stop()

	var loginsStored, duplicates, users, ids uint64
	row := env.conn.QueryRow(ctx, `SELECT sum(l), sum(d) FROM (
	SELECT argMax(logins, version) AS l, argMax(duplicates, version) AS d FROM daily_usage GROUP BY app, day, src_partition)`)
	if err := row.Scan(&loginsStored, &duplicates); err != nil {
		t.Fatal(err)
	}
	if err := env.conn.QueryRow(ctx, `SELECT uniqExact(user) FROM user_days`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if err := env.conn.QueryRow(ctx, `SELECT uniqExact(id_hi, id_lo) FROM event_ids`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if loginsStored != 200 || duplicates != 10 || users != 200 || ids != 200 {
		t.Fatalf("stored: %d logins, %d duplicates, %d users, %d ids; want 200, 10, 200, 200", loginsStored, duplicates, users, ids)
	}
}

// gateConn holds the Send of the first INSERT INTO daily_usage until
// release is closed, and closes held when it starts holding it.
type gateConn struct {
	driver.Conn
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func (c *gateConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil || !strings.Contains(query, "INSERT INTO daily_usage") {
		return b, err
	}
	return &gateBatch{Batch: b, c: c}, nil
}

type gateBatch struct {
	driver.Batch
	c *gateConn
}

func (b *gateBatch) Send() error {
	first := false
	b.c.once.Do(func() { first = true })
	if first {
		close(b.c.held)
		<-b.c.release
	}
	return b.Batch.Send()
}

package aggregate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
)

// TestKeyMismatchGoesToDLQ publishes events whose message key is not their
// app id (another app's id, none, and a copy of a counted event under a
// third key, which could land in another partition and be counted twice) on
// the real broker: each goes to the DLQ topic and the dead_letters table
// with a "key: " reason, and only the correctly keyed event is counted.
func TestKeyMismatchGoesToDLQ(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now()
	login := func(id string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":"login","app":1400000001,"time":%q,"user":"alice"}`, id, now.Format(time.RFC3339Nano))
	}
	env.produce(ctx, t, env.events, []kafka.Message{
		{Key: []byte("1400000001"), Value: login("k1")},
		{Key: []byte("1400000002"), Value: login("k2")},
		{Value: login("k3")},
		{Key: []byte("1400000009"), Value: login("k1")},
	})
	agg, stop := env.runAggregator(ctx, t, "a", aggregate.Config{FlushInterval: 100 * time.Millisecond}, env.conn)
	env.waitAggregated(ctx, t)
	stop()

	if st := agg.Stats(); st.Counted != 1 || st.Rejected != 3 || st.Duplicates != 0 {
		t.Fatalf("unexpected stats; got %+v; want 1 counted, 3 rejected, 0 duplicates", st)
	}
	dlq := env.readAll(ctx, t, env.dlq)
	if len(dlq) != 3 {
		t.Fatalf("unexpected dead letters on %s; got %d; want 3", env.dlq, len(dlq))
	}
	for _, m := range dlq {
		var reason string
		for _, h := range m.Headers {
			if h.Key == "immeter-reason" {
				reason = string(h.Value)
			}
		}
		if !strings.HasPrefix(reason, "key: ") {
			t.Fatalf("unexpected reason of %s (key %q); got %q; want key: ...", m.Value, m.Key, reason)
		}
	}
	var rows uint64
	if err := env.conn.QueryRow(ctx, "SELECT count() FROM dead_letters WHERE startsWith(reason, 'key: ')").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Fatalf("unexpected dead_letters rows with a key reason; got %d; want 3", rows)
	}
	var logins uint64
	if err := env.conn.QueryRow(ctx, "SELECT toUInt64(sum(logins)) FROM daily_stats WHERE app = 1400000001").Scan(&logins); err != nil {
		t.Fatal(err)
	}
	if logins != 1 {
		t.Fatalf("unexpected logins of app 1400000001; got %d; want 1", logins)
	}
}

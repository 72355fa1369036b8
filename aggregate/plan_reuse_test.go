package aggregate_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/schemas"
)

// A plan event that reuses an id of its app with another edition, after a
// restart of the aggregator (so the first change is known only from
// ClickHouse), goes to the DLQ with a reason; plan_changes keeps the first
// change alone, so no merge can change the edition billed.
func TestPlanIDReusedAcrossRestart(t *testing.T) {
	t.Parallel()
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const app = 1400000003
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	plan := func(edition string) kafka.Message {
		v, err := json.Marshal(schemas.Event{ID: "plan-1", Type: schemas.Plan, App: app, Time: at, Edition: edition})
		if err != nil {
			t.Fatal(err)
		}
		return kafka.Message{Key: []byte(strconv.Itoa(app)), Value: v}
	}
	cfg := aggregate.Config{FlushInterval: 100 * time.Millisecond}
	env.produce(ctx, t, env.events, []kafka.Message{plan("standard")})
	_, stop := env.runAggregator(ctx, t, "first", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()

	env.produce(ctx, t, env.events, []kafka.Message{plan("premium")})
	_, stop = env.runAggregator(ctx, t, "second", cfg, env.conn)
	env.waitAggregated(ctx, t)
	stop()

	var editions []string
	rows, err := env.conn.Query(ctx, "SELECT DISTINCT edition FROM plan_changes WHERE app = ? ORDER BY edition", uint32(app))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		editions = append(editions, e)
	}
	rows.Close()
	if len(editions) != 1 || editions[0] != "standard" {
		t.Errorf("plan_changes of app %d: editions %v; want [standard]", app, editions)
	}
	dlq := env.readAll(ctx, t, env.dlq)
	if len(dlq) != 1 || !strings.Contains(string(dlq[0].Value), "premium") {
		t.Fatalf("DLQ: %d records; want the premium plan event alone: %v", len(dlq), dlq)
	}
	var reason string
	for _, h := range dlq[0].Headers {
		if strings.Contains(string(h.Value), "already used by another plan change") {
			reason = string(h.Value)
		}
	}
	if reason == "" {
		t.Errorf("DLQ record without the reason: headers %v", dlq[0].Headers)
	}
}

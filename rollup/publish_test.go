package rollup

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// TestPublishInChunks publishes a month of 13 apps five at a time (the pass
// pipelines pricing, storing and publishing by chunk): every app's final
// record is stored, published once, in app order, and marked published,
// and each published record is the one stored.
func TestPublishInChunks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := schemas.Month{Year: 2026, Month: time.October}
	e := newAlertTestEnv(ctx, t, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	writeMonth(ctx, t, e.conn, m)
	want, err := ReadMonth(ctx, e.conn, m, e.loc) // 12 apps with usage, one with a paid edition only
	if err != nil {
		t.Fatal(err)
	}
	defer func(n int) { publishChunk = n }(publishChunk)
	publishChunk = 5

	cfg := DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Location, cfg.Now = e.brokers, e.topic, e.loc, e.Now
	r, err := New(cfg, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Publish(ctx, m, ForceFinal)
	if err != nil {
		t.Fatal(err)
	}
	if res.Final != len(want) || res.Provisional+res.Correction+res.Unchanged != 0 {
		t.Fatalf("unexpected result %+v; want %d final", res, len(want))
	}
	n := e.published(ctx, t)
	if n != len(want) {
		t.Fatalf("%d records published; want %d", n, len(want))
	}
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer rd.Close()
	prev := uint32(0)
	for range n {
		msg, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rec schemas.BillingRecord
		if err := json.Unmarshal(msg.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.App <= prev || want[rec.App] == nil || rec.Status != schemas.Final || rec.Usage.MAU != want[rec.App].Usage.MAU {
			t.Errorf("unexpected record after app %d: app %d status %s MAU %d", prev, rec.App, rec.Status, rec.Usage.MAU)
		}
		prev = rec.App
		var stored string
		if err := e.conn.QueryRow(ctx, "SELECT any(record) FROM billing_records WHERE app = ? AND month = ?", rec.App, m.String()).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != string(msg.Value) {
			t.Errorf("app %d: published record differs from the stored one", rec.App)
		}
	}
	var marked uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM billing_published").Scan(&marked); err != nil {
		t.Fatal(err)
	}
	if int(marked) != len(want) {
		t.Errorf("%d records marked published; want %d", marked, len(want))
	}
}

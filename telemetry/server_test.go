package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	var failing error
	h := Handler(NewRegistry(), Check{Name: "a", Func: func(context.Context) error { return nil }},
		Check{Name: "b", Func: func(context.Context) error { return failing }})
	f := func(path string, wantCode int, wantBody string) {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(w.Body)
		if w.Code != wantCode || !strings.Contains(string(body), wantBody) {
			t.Errorf("GET %s: unexpected answer; got %d %q; want %d with %q", path, w.Code, body, wantCode, wantBody)
		}
	}
	f("/healthz", 200, "ok")
	f("/readyz", 200, "ok")
	failing = errors.New("down")
	f("/readyz", 503, "b: down")
	f("/healthz", 200, "ok")
	KafkaError(KafkaFetch)
	f("/metrics", 200, `immeter_kafka_errors_total{op="fetch"} 1`)
	f("/metrics", 200, "go_goroutines")
	f("/metrics", 200, "process_resident_memory_bytes")
}

func TestInsertTable(t *testing.T) {
	f := func(query, want string) {
		t.Helper()
		if got := insertTable(query); got != want {
			t.Errorf("insertTable(%q): got %q; want %q", query, got, want)
		}
	}
	f("INSERT INTO event_ids (src_partition, app)", "event_ids")
	f("INSERT INTO daily_usage(app, day)", "daily_usage")
	f("insert into db.`user_days` (app)", "user_days")
	f("\n\t\tINSERT INTO dead_letters\n\t\t(received_at)", "dead_letters")
	f("SELECT 1", "")
}

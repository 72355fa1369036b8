package main

import (
	"context"
	"strings"
	"testing"
)

// TestIngestSettings checks that each gateway limit refuses a bad value,
// a typed 0 included, naming the variable, before anything is started.
func TestIngestSettings(t *testing.T) {
	f := func(name, value, want string) {
		t.Helper()
		t.Run(name+"="+value, func(t *testing.T) {
			t.Setenv(name, value)
			err := runIngest(context.Background(), []string{"-brokers", "127.0.0.1:1", "-secrets", "/nonexistent"})
			if err == nil || !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), want) {
				t.Fatalf("unexpected error; got %v; want one starting %q and containing %q", err, name, want)
			}
		})
	}
	f("INGEST_MAX_CONNECTIONS", "0", "must be an integer >= 1")
	f("INGEST_MAX_REQUESTS", "0", "must be an integer >= 1")
	f("INGEST_APP_RATE", "0", "must be a number > 0")
	f("INGEST_APP_RATE", "Inf", "must be a finite number > 0")
	f("INGEST_APP_BURST", "0", "must be an integer >= 1")
	f("INGEST_REPLAY_CACHE", "-5", "must be an integer >= 1")
	f("INGEST_MAX_CONNECTIONS", "2", "must be >= INGEST_MAX_REQUESTS (4)")
}

package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/internal/testenv"
)

// TestBenchSmoke runs every phase of `immeter bench` (what `make bench`
// runs after the Go benchmarks) at a tiny size on the real services, so
// that the benchmark keeps working as the code it measures changes: each
// phase must report, the alert probes must all arrive, and the exact MAU
// must equal the raw events'.
func TestBenchSmoke(t *testing.T) {
	brokers, chAddr := testenv.Services(t)
	if testing.Short() {
		t.Skip("-short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "bench", "--apps", "1000", "--users", "5000", "--preload", "20000",
		"--rate", "4000", "--sustain", "3s", "--latency", "3s", "--run-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "IMMETER_TEST_MAIN=1", "KAFKA_BROKERS="+strings.Join(brokers, ","), "CLICKHOUSE_ADDR="+chAddr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("immeter bench: %v\n%s", err, out)
	}
	for _, want := range []string{
		"\npreload: 20000 events",
		"\nsustained: offered 4000 events/s",
		"\nlatency: event to visible in ClickHouse (daily_usage), ",
		"\nalerts:  event to alert on the topic (a login crossing 80% of a Developer app's free MAU; rollup.Alerter, default ALERT_INTERVAL), 30 of 30 probes",
		"exact MAU equal: true",
		"\nmonth close: final rollup (rollup.Publish, ForceFinalOpen) of ",
		"\nmonth close of a synthetic month",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the output", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

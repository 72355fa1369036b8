package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs the immeter command itself when the test binary is started
// with IMMETER_TEST_MAIN=1, so a test can check its exit status.
func TestMain(m *testing.M) {
	if os.Getenv("IMMETER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunExitsNonZeroWhenAComponentFails starts `immeter run` with the
// gateway's address already taken: the gateway fails, and the process must
// stop the others and exit non-zero, naming the failure.
func TestRunExitsNonZeroWhenAComponentFails(t *testing.T) {
	env := integration(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "run")
	cmd.Env = append(os.Environ(),
		"IMMETER_TEST_MAIN=1",
		"KAFKA_BROKERS="+strings.Join(env.brokers, ","),
		"EVENTS_TOPIC="+env.events, "DLQ_TOPIC="+env.dlq, "BILLING_TOPIC="+env.billing,
		"AGGREGATE_GROUP="+env.group, "AGGREGATE_SESSION_TIMEOUT=6s",
		"CLICKHOUSE_ADDR="+env.ch.Addr, "CLICKHOUSE_DATABASE="+env.ch.Database,
		"IMMETER_SECRETS_FILE="+writeSecrets(t), "INGEST_ADDR="+taken.Addr().String(), "CONSOLE_ADDR=127.0.0.1:0",
	)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("unexpected exit; got %v; want exit status 1\n%s", err, out)
	}
	if ctx.Err() != nil {
		t.Fatalf("immeter run did not stop by itself:\n%s", out)
	}
	if !strings.Contains(string(out), "immeter run: ingest: ") || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("the error does not name the failed component:\n%s", out)
	}
}

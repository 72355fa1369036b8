package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIngestSettings checks that each gateway limit refuses a bad value,
// a typed 0 included, naming the variable, before anything is started.
func TestIngestLimitSettings(t *testing.T) {
	f := func(name, value, want string) {
		t.Helper()
		t.Run(name+"="+value, func(t *testing.T) {
			t.Setenv(name, value)
			err := runIngest(context.Background(), []string{"-kafka-brokers", "127.0.0.1:1", "-secrets-file", "/nonexistent"})
			if err == nil || !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), want) {
				t.Fatalf("unexpected error; got %v; want one starting %q and containing %q", err, name, want)
			}
		})
	}
	f("INGEST_MAX_CONNECTIONS", "0", `"0": want an integer >= 1`)
	f("INGEST_MAX_REQUESTS", "0", `"0": want an integer >= 1`)
	f("INGEST_APP_RATE", "0", `"0": want a finite number > 0`)
	f("INGEST_APP_RATE", "Inf", `"Inf": want a finite number > 0`)
	f("INGEST_APP_BURST", "0", `"0": want an integer >= 1`)
	f("INGEST_REPLAY_CACHE", "-5", `"-5": want an integer >= 1`)
	f("INGEST_MAX_CONNECTIONS", "2", "must be >= INGEST_MAX_REQUESTS (4)")
}

// TestSecuritySettings checks that each transport security setting refuses
// a bad value naming the variable, before anything connects.
func TestSecuritySettings(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(run func(context.Context, []string) error, args []string, env map[string]string, want string) {
		t.Helper()
		t.Run(want, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			err := run(context.Background(), args)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("unexpected error; got %v; want one starting %q", err, want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error reveals the password: %v", err)
			}
		})
	}
	ing := []string{"-kafka-brokers", "127.0.0.1:1", "-secrets-file", "/nonexistent"}
	f(runIngest, ing, map[string]string{"KAFKA_TLS": "yes please"}, `KAFKA_TLS: "yes please": want true or false`)
	f(runIngest, ing, map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD_FILE: required")
	f(runIngest, ing, map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": empty}, "KAFKA_SASL_PASSWORD_FILE: "+empty+": empty")
	f(runIngest, ing, map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": pw}, "KAFKA_SASL_MECHANISM: PLAIN sends the password in clear")
	f(runIngest, ing, map[string]string{"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": filepath.Join(dir, "nope.pem")}, "KAFKA_TLS_CA_FILE: open")
	f(runSimulate, []string{"-kafka-brokers", "127.0.0.1:1"}, map[string]string{"KAFKA_TLS_CERT_FILE": pw}, "KAFKA_TLS_CERT_FILE: set, but KAFKA_TLS is off")
	mig := []string{"-clickhouse-addr", "127.0.0.1:1"}
	f(runMigrate, mig, map[string]string{"CLICKHOUSE_TLS": "maybe"}, `CLICKHOUSE_TLS: "maybe": want true or false`)
	f(runMigrate, mig, map[string]string{"CLICKHOUSE_PASSWORD": "hunter2", "CLICKHOUSE_PASSWORD_FILE": pw}, "CLICKHOUSE_PASSWORD_FILE: set together with CLICKHOUSE_PASSWORD")
	f(runMigrate, mig, map[string]string{"CLICKHOUSE_PASSWORD_FILE": filepath.Join(dir, "nope")}, "CLICKHOUSE_PASSWORD_FILE: open")
	f(runMigrate, mig, map[string]string{"CLICKHOUSE_TLS_CA_FILE": pw}, "CLICKHOUSE_TLS_CA_FILE, CLICKHOUSE_TLS_SERVER_NAME: set, but CLICKHOUSE_TLS is off")
	f(runMigrate, mig, map[string]string{"CLICKHOUSE_TLS": "true", "CLICKHOUSE_TLS_CA_FILE": pw}, "CLICKHOUSE_TLS_CA_FILE: "+pw+": no PEM certificate")
}

package schemas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKafkaSecurityValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(s KafkaSecurity, want string) {
		t.Helper()
		err := s.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("unexpected error for %+v: %v", s, err)
			}
			return
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("unexpected error for %+v; got %v; want one starting %q", s, err, want)
		}
		if s.Password != "" && strings.Contains(err.Error(), s.Password) {
			t.Fatalf("error reveals the password: %v", err)
		}
	}
	f(KafkaSecurity{}, "")
	f(KafkaSecurity{SASLMechanism: "scram-sha-512", Username: "u", Password: "hunter2"}, "")
	f(KafkaSecurity{SASLMechanism: "SCRAM-SHA-256", Username: "u", Password: "hunter2"}, "KAFKA_SASL_MECHANISM: want SCRAM-SHA-512 or PLAIN")
	f(KafkaSecurity{SASLMechanism: "PLAIN", Username: "u", Password: "hunter2"}, "KAFKA_SASL_MECHANISM: PLAIN sends the password in clear")
	f(KafkaSecurity{SASLMechanism: "PLAIN", Password: "hunter2", TLS: true}, "KAFKA_SASL_USERNAME: required")
	f(KafkaSecurity{Username: "u", Password: "hunter2"}, "KAFKA_SASL_MECHANISM: required")
	f(KafkaSecurity{CAFile: notPEM}, "KAFKA_TLS_CA_FILE: set, but KAFKA_TLS is off")
	f(KafkaSecurity{TLS: true, CAFile: notPEM}, "KAFKA_TLS_CA_FILE: "+notPEM+": no PEM certificate")
	f(KafkaSecurity{TLS: true, CAFile: filepath.Join(dir, "missing.pem")}, "KAFKA_TLS_CA_FILE: open")
	f(KafkaSecurity{TLS: true, CertFile: notPEM}, "KAFKA_TLS_KEY_FILE: required with KAFKA_TLS_CERT_FILE")
	f(KafkaSecurity{TLS: true, CertFile: notPEM, KeyFile: notPEM}, "KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE:")
	f(KafkaSecurity{TLS: true, ServerName: "kafka.internal"}, "")

	c := ClickHouseConfig{Addr: "127.0.0.1:9440", Database: "immeter", TLSCAFile: notPEM}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_TLS is off") {
		t.Fatalf("unexpected error for a CA file without CLICKHOUSE_TLS: %v", err)
	}
	c.TLS = true
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "CLICKHOUSE_TLS_CA_FILE: ") {
		t.Fatalf("unexpected error for a CA file with no certificate: %v", err)
	}
}

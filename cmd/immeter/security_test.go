package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

const sqlSecureCounts = "SELECT sum(logins), sum(messages_c2c) FROM daily_stats WHERE app = ?"

// TestAggregateOverSASLSSL runs `immeter aggregate` against a private Kafka
// broker's SASL_SSL listener (.ci/kafka.sh with KAFKA_SASL_SSL_PORT),
// configured only through the environment (SCRAM-SHA-512, CA, client
// certificate, password file): the consumer group, the fetches and topic
// creation go over it, and the events a producer published over it are
// counted exactly.
func TestAggregateOverSASLSSL(t *testing.T) {
	env := integration(t)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	dir := t.TempDir()
	sasl := free()
	script := func(action string) error {
		cmd := exec.Command("bash", filepath.Join("..", "..", ".ci", "kafka.sh"), action)
		cmd.Env = append(os.Environ(), "KAFKA_PORT="+free(), "KAFKA_CONTROLLER_PORT="+free(), "KAFKA_SASL_SSL_PORT="+sasl,
			"IMMETER_RUN_DIR="+dir, "KAFKA_START_TIMEOUT=180")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf(".ci/kafka.sh %s: %v: %s", action, err, out)
		}
		return err
	}
	t.Cleanup(func() { script("stop") })
	if err := script("start"); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "kafka", "tls")
	pwFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte("immeter-scram-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + sasl
	for k, v := range map[string]string{
		"KAFKA_BROKERS": addr, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "immeter",
		"KAFKA_SASL_PASSWORD_FILE": pwFile, "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": filepath.Join(tlsDir, "ca.pem"),
		"KAFKA_TLS_CERT_FILE": filepath.Join(tlsDir, "client.pem"), "KAFKA_TLS_KEY_FILE": filepath.Join(tlsDir, "client-key.pem"),
		"EVENTS_TOPIC": env.events, "DLQ_TOPIC": env.dlq, "BILLING_TOPIC": env.billing, "AGGREGATE_GROUP": env.group,
		"CLICKHOUSE_ADDR": env.ch.Addr, "CLICKHOUSE_DATABASE": env.ch.Database, "FLUSH_INTERVAL": "200ms",
		"MAX_EVENT_AGE": "8760h",
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The ground truth: 40 logins of distinct users and 25 messages of 2.
	sec := schemas.KafkaSecurity{SASLMechanism: "SCRAM-SHA-512", Username: "immeter", Password: "immeter-scram-secret",
		TLS: true, CAFile: filepath.Join(tlsDir, "ca.pem"), CertFile: filepath.Join(tlsDir, "client.pem"), KeyFile: filepath.Join(tlsDir, "client-key.pem")}
	if err := ingest.EnsureTopicsWith(ctx, sec, []string{addr}, testPartitions, 1, env.events, env.dlq); err != nil {
		t.Fatal(err)
	}
	p, err := ingest.NewProducer(ingest.ProducerConfig{Brokers: []string{addr}, Topic: env.events, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	const app = 1400000777
	at := time.Now().Add(-time.Hour)
	var evs []schemas.Event
	for i := range 40 {
		evs = append(evs, ingest.NewLogin(app, "u"+strconv.Itoa(i), at))
	}
	for range 25 {
		evs = append(evs, ingest.NewMessage(app, "u1", "c2c", 2, at))
	}
	if errs, err := p.PublishSync(ctx, evs...); err != nil || errs[0] != nil {
		t.Fatalf("publish over SASL_SSL: %v %v", err, errs)
	}
	p.Close(ctx)

	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runAggregate(actx, nil) }()
	defer func() {
		stop()
		if err := <-done; err != nil && actx.Err() == nil {
			t.Errorf("aggregate: %v", err)
		}
	}()
	for {
		var logins, messages uint64
		err := env.conn.QueryRow(ctx, sqlSecureCounts, uint32(app)).Scan(&logins, &messages)
		if err == nil && logins == 40 && messages == 50 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("aggregate stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("events not aggregated over SASL_SSL; got %d logins, %d messages (%v); want 40, 50", logins, messages, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

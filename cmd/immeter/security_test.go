package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

const sqlSecureCounts = "SELECT sum(logins), sum(messages_c2c) FROM daily_stats WHERE app = ?"

// publishOnce publishes e with a producer of its own and says whether Kafka
// acknowledged it within a few seconds.
func publishOnce(ctx context.Context, addr, topic string, sec schemas.KafkaSecurity, e schemas.Event) error {
	p, err := ingest.NewProducer(ingest.ProducerConfig{Brokers: []string{addr}, Topic: topic, Security: sec, WriteTimeout: 3 * time.Second})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Close(cctx) // what was refused stays undelivered
	}()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	errs, err := p.PublishSync(pctx, e)
	if err != nil {
		return err
	}
	return errs[0]
}

// TestAggregateOverSASLSSL starts a private Kafka broker with a SASL_SSL
// listener (.ci/kafka.sh with KAFKA_SASL_SSL_PORT: client certificate
// required, SCRAM-SHA-512 and PLAIN). The producer library publishes over it
// with SCRAM and with PLAIN; a wrong password, a missing client certificate,
// an unknown CA, a wrong server name and plaintext are refused with their
// reason and publish nothing; and `immeter aggregate`, configured only
// through the environment (password file included), consumes over it (its
// consumer group, fetches and topic creation) and counts exactly what was
// published.
func TestAggregateOverSASLSSL(t *testing.T) {
	env := integration(t)
	sasl := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(sasl)
	broker := testenv.StartKafka(t, "KAFKA_SASL_SSL_PORT="+port, "KAFKA_START_TIMEOUT=180")
	dir := broker.Dir
	tlsDir := filepath.Join(dir, "kafka", "tls")
	pwFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte("immeter-scram-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := sasl
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

	// PLAIN over TLS publishes too; each refusal comes with its reason, and
	// a refused producer publishes nothing.
	plain := sec
	plain.SASLMechanism, plain.Password = schemas.SASLPlain, "immeter-plain-secret"
	if err := publishOnce(ctx, addr, env.events, plain, ingest.NewLogin(app, "u0", at)); err != nil {
		t.Fatalf("PLAIN over TLS with a client certificate: %v", err)
	}
	f := func(name string, tune func(*schemas.KafkaSecurity), want string) {
		t.Helper()
		s := sec
		tune(&s)
		tr, err := s.Transport("immeter-test")
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
		_, err = c.Metadata(dctx, &kafka.MetadataRequest{Topics: []string{env.events}})
		tr.CloseIdleConnections()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), want) {
			t.Fatalf("%s: unexpected result; got %v; want an error containing %q", name, err, want)
		}
		t.Logf("%s: %v", name, err)
		if err := publishOnce(ctx, addr, env.events, s, ingest.NewLogin(app, "refused", at)); err == nil {
			t.Fatalf("%s: an event was published", name)
		}
	}
	f("wrong SCRAM password", func(s *schemas.KafkaSecurity) { s.Password = "guess" }, "authentication failed")
	f("wrong PLAIN password", func(s *schemas.KafkaSecurity) { s.SASLMechanism, s.Password = schemas.SASLPlain, "guess" }, "authentication failed")
	f("no client certificate", func(s *schemas.KafkaSecurity) { s.CertFile, s.KeyFile = "", "" }, "bad certificate")
	f("unknown CA", func(s *schemas.KafkaSecurity) { s.CAFile = "" }, "certificate signed by unknown authority")
	f("wrong server name", func(s *schemas.KafkaSecurity) { s.ServerName = "kafka.example" }, "not kafka.example")
	f("plaintext", func(s *schemas.KafkaSecurity) { *s = schemas.KafkaSecurity{} }, "expecting tls")

	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runAggregate(actx, nil) }()
	defer func() {
		stop()
		if err := <-done; err != nil && actx.Err() == nil {
			t.Errorf("aggregate: %v", err)
		}
	}()
	// 40 logins by SCRAM, 1 by PLAIN (user u0 again: 41 logins), none refused.
	for {
		var logins, messages uint64
		err := env.conn.QueryRow(ctx, sqlSecureCounts, uint32(app)).Scan(&logins, &messages)
		if err == nil && logins == 41 && messages == 50 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("aggregate stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("events not aggregated over SASL_SSL; got %d logins, %d messages (%v); want 41, 50", logins, messages, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

package ingest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// secureBroker returns the SASL_SSL address of a broker and its TLS
// directory (ca.pem, client.pem, client-key.pem): IMMETER_SASL_SSL_BROKER
// and IMMETER_SASL_SSL_TLS_DIR when set, else a private broker that
// .ci/kafka.sh starts on free ports with KAFKA_SASL_SSL_PORT and stops when
// the test ends.
func secureBroker(t *testing.T) (addr, tlsDir string) {
	t.Helper()
	if os.Getenv("IMMETER_INTEGRATION") != "1" {
		t.Skip("integration test: starts a private Kafka broker with a SASL_SSL listener; set IMMETER_INTEGRATION=1 (make test does)")
	}
	if a, d := os.Getenv("IMMETER_SASL_SSL_BROKER"), os.Getenv("IMMETER_SASL_SSL_TLS_DIR"); a != "" && d != "" {
		return a, d
	}
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	dir := t.TempDir()
	port, ctrl, sasl := free(), free(), free()
	env := append(os.Environ(), "KAFKA_PORT="+port, "KAFKA_CONTROLLER_PORT="+ctrl, "KAFKA_SASL_SSL_PORT="+sasl,
		"IMMETER_RUN_DIR="+dir, "KAFKA_START_TIMEOUT=180")
	script := func(action string) error {
		cmd := exec.Command("bash", filepath.Join("..", ".ci", "kafka.sh"), action)
		cmd.Env = env
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
	return "127.0.0.1:" + sasl, filepath.Join(dir, "kafka", "tls")
}

// TestKafkaSASLSSL publishes through the producer library to a real broker's
// SASL_SSL listener (client certificate required) with SCRAM-SHA-512 and
// with PLAIN, reads the events back, and checks that a wrong password, a
// missing client certificate, an unknown CA and plaintext are refused.
func TestKafkaSASLSSL(t *testing.T) {
	addr, tlsDir := secureBroker(t)
	good := schemas.KafkaSecurity{
		SASLMechanism: schemas.SASLScramSHA512, Username: "immeter", Password: "immeter-scram-secret",
		TLS: true, CAFile: filepath.Join(tlsDir, "ca.pem"),
		CertFile: filepath.Join(tlsDir, "client.pem"), KeyFile: filepath.Join(tlsDir, "client-key.pem"),
	}
	plain := good
	plain.SASLMechanism, plain.Password = schemas.SASLPlain, "immeter-plain-secret"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := "test.secure." + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := EnsureTopicsWith(ctx, good, []string{addr}, 1, 1, topic); err != nil {
		t.Fatalf("EnsureTopicsWith over SASL_SSL: %v", err)
	}
	publish := func(sec schemas.KafkaSecurity, n int, wait time.Duration) error {
		p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: topic, Security: sec, WriteTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			p.Close(cctx) // what was refused stays undelivered
		}()
		var evs []schemas.Event
		for i := range n {
			evs = append(evs, NewLogin(testApp, "u"+strconv.Itoa(i), gwNow))
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		errs, err := p.PublishSync(pctx, evs...)
		if err != nil {
			return err
		}
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
		return nil
	}
	if err := publish(good, 3, 10*time.Second); err != nil {
		t.Fatalf("SCRAM-SHA-512 over TLS with a client certificate: %v", err)
	}
	if err := publish(plain, 2, 10*time.Second); err != nil {
		t.Fatalf("PLAIN over TLS with a client certificate: %v", err)
	}

	// Each refusal, with the broker's or the TLS layer's reason, and no
	// event published.
	f := func(name string, tune func(*schemas.KafkaSecurity), want string) {
		t.Helper()
		sec := good
		tune(&sec)
		tr, err := sec.Transport("immeter-test")
		if err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
		_, err = c.Metadata(dctx, &kafka.MetadataRequest{Topics: []string{topic}})
		tr.CloseIdleConnections()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), want) {
			t.Fatalf("%s: unexpected result; got %v; want an error containing %q", name, err, want)
		}
		t.Logf("%s: %v", name, err)
		if err := publish(sec, 1, 2*time.Second); err == nil {
			t.Fatalf("%s: an event was published", name)
		}
	}
	f("wrong SCRAM password", func(s *schemas.KafkaSecurity) { s.Password = "guess" }, "authentication failed")
	f("wrong PLAIN password", func(s *schemas.KafkaSecurity) { s.SASLMechanism, s.Password = schemas.SASLPlain, "guess" }, "authentication failed")
	f("no client certificate", func(s *schemas.KafkaSecurity) { s.CertFile, s.KeyFile = "", "" }, "bad certificate")
	f("unknown CA", func(s *schemas.KafkaSecurity) { s.CAFile = "" }, "certificate signed by unknown authority")
	f("wrong server name", func(s *schemas.KafkaSecurity) { s.ServerName = "kafka.example" }, "not kafka.example")
	f("plaintext", func(s *schemas.KafkaSecurity) { *s = schemas.KafkaSecurity{} }, "expecting tls")

	// Exactly the 5 good events are on the topic.
	tr, err := good.Transport("immeter-test")
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0,
		Dialer: &kafka.Dialer{Timeout: 10 * time.Second, TLS: tr.TLS, SASLMechanism: tr.SASL}})
	defer r.Close()
	r.SetOffset(kafka.FirstOffset)
	users := map[string]bool{}
	for range 5 {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := r.ReadMessage(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("reading back over SASL_SSL after %d records: %v", len(users), err)
		}
		e, err := schemas.DecodeEvent(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		users[e.ID] = true
	}
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if m, err := r.ReadMessage(rctx); err == nil {
		t.Fatalf("unexpected sixth record %s: a refused publish got through", m.Value)
	}
	if len(users) != 5 {
		t.Fatalf("unexpected distinct events; got %d; want 5", len(users))
	}
}

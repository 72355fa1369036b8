package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

const (
	testApp  = 1400000001
	otherApp = 1400000002
)

var (
	testSecrets = map[uint32][]byte{testApp: []byte("s3cret-one"), otherApp: []byte("s3cret-two")}
	gwNow       = time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	eventSeq    atomic.Int64
)

// newTestGateway returns a gateway on p with the test secrets and clock.
func newTestGateway(t testing.TB, p *Producer, tune func(*GatewayConfig)) *Gateway {
	t.Helper()
	cfg := DefaultGatewayConfig()
	cfg.Secrets = testSecrets
	cfg.Now = func() time.Time { return gwNow }
	cfg.MaxBodyBytes = 32 << 10
	cfg.MaxEventBytes = 2 << 10
	if tune != nil {
		tune(&cfg)
	}
	g, err := NewGateway(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// ev returns a JSON event of testApp with a fresh id and the given fields.
func ev(fields string) string {
	return fmt.Sprintf(`{"id":"gw-%d","app":%d,"time":"2026-11-25T21:00:00+08:00",%s}`, eventSeq.Add(1), testApp, fields)
}

// signedRequest builds a POST /v1/events signed by app at the gateway's now.
func signedRequest(app uint32, secret []byte, at time.Time, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
	ts := strconv.FormatInt(at.Unix(), 10)
	r.Header.Set(HeaderApp, strconv.FormatUint(uint64(app), 10))
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, Sign(secret, ts, body))
	return r
}

type answer struct {
	status int
	header http.Header
	resp   GatewayResponse
	raw    string
}

// serve runs one request through the handler and checks that the status is
// one schemas/openapi.yaml documents for the route.
func serve(t testing.TB, g *Gateway, r *http.Request) answer {
	t.Helper()
	w := httptest.NewRecorder()
	g.Handler().ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if !documented(t, r.Method, r.URL.Path, w.Code) {
		t.Errorf("%s %s answered %d, which schemas/openapi.yaml does not document", r.Method, r.URL.Path, w.Code)
	}
	if r.URL.Path == "/v1/events" {
		if err := json.Unmarshal(w.Body.Bytes(), &a.resp); err != nil {
			t.Fatalf("response is not a GatewayResponse: %v: %s", err, a.raw)
		}
	}
	return a
}

// mentions says whether the request error or some result reason contains s.
func (a answer) mentions(s string) bool {
	if strings.Contains(a.resp.Error, s) {
		return true
	}
	for _, r := range a.resp.Results {
		if strings.Contains(r.Reason, s) {
			return true
		}
	}
	return false
}

// TestGatewayMatrix sends accepted and rejected requests and checks status,
// reason, counts, and what reached the topic: nothing for a rejected request.
func TestGatewayMatrix(t *testing.T) {
	type tc struct {
		name               string
		body               string
		contentType        string
		app                uint32              // signing app; default testApp
		secret             []byte              // default the app's secret
		at                 time.Time           // signing time; default gwNow
		mod                func(*http.Request) // after signing
		status             int
		reason             string // in the error or a result's reason
		accepted, rejected int
		published          int64
	}
	big := strings.Repeat("x", 2<<10)
	login := func() string { return ev(`"type":"login","user":"u1"`) }
	cases := []tc{
		// accepted
		{name: "single event", body: login(), status: 202, accepted: 1, published: 1},
		{name: "array", body: "[" + login() + "," + ev(`"type":"message","user":"u1","channel":"c2c","count":3`) + "," + ev(`"type":"plan","edition":"premium"`) + "]", status: 202, accepted: 3, published: 3},
		{name: "ndjson by content type", contentType: "application/x-ndjson", body: login() + "\n\n" + ev(`"type":"call","user":"u1","media":"audio","seconds":30`) + "\n", status: 202, accepted: 2, published: 2},
		{name: "ndjson sniffed", body: login() + "\r\n" + ev(`"type":"group","op":"create","group":"g1","group_type":"Work"`), status: 202, accepted: 2, published: 2},
		{name: "single event in ndjson", contentType: "application/x-ndjson; charset=utf-8", body: login(), status: 202, accepted: 1, published: 1},
		{name: "mixed valid and invalid", body: "[" + login() + "," + ev(`"type":"login"`) + "]", status: 202, accepted: 1, rejected: 1, published: 1, reason: "user: required for login"},
		{name: "unknown fields ignored", body: ev(`"type":"login","user":"u1","node":"im-7"`), status: 202, accepted: 1, published: 1},

		// malformed
		{name: "malformed JSON", body: `{"id":"x",`, status: 400, rejected: 1, reason: "malformed JSON"},
		{name: "malformed array", body: `[` + login() + `,`, status: 400, reason: "malformed JSON array"},
		{name: "malformed ndjson line", contentType: "application/x-ndjson", body: login() + "\n{nope}\n", status: 202, accepted: 1, rejected: 1, published: 1, reason: "malformed JSON"},
		{name: "empty body", body: "  \n", status: 400, reason: "empty body"},
		{name: "empty array", body: "[]", status: 400, reason: "no events"},
		{name: "not an object", body: `"login"`, status: 400, rejected: 1, reason: "malformed JSON"},

		// one case per contract rule of schemas.DecodeEvent
		{name: "id missing", body: `{"type":"login","app":1400000001,"time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "id: required, 1 to 128 bytes"},
		{name: "id too long", body: `{"id":"` + strings.Repeat("i", 129) + `","type":"login","app":1400000001,"time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "id: too long: 129 bytes"},
		{name: "type missing", body: `{"id":"t1","app":1400000001,"time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "type: required"},
		{name: "type unknown", body: ev(`"type":"logout","user":"u1"`), status: 400, rejected: 1, reason: `type: must be one of login, message, group, call, plan; got "logout"`},
		{name: "app missing", body: `{"id":"a1","type":"login","time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "app: required"},
		{name: "app zero", body: `{"id":"a2","type":"login","app":0,"time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "app: must be an integer SDKAppID"},
		{name: "app as string", body: `{"id":"a3","type":"login","app":"1400000001","time":"2026-11-25T21:00:00Z","user":"u"}`, status: 400, rejected: 1, reason: "app: must be an integer SDKAppID"},
		{name: "time missing", body: `{"id":"t2","type":"login","app":1400000001,"user":"u"}`, status: 400, rejected: 1, reason: "time: required"},
		{name: "time without offset", body: `{"id":"t3","type":"login","app":1400000001,"time":"2026-11-25T21:00:00","user":"u"}`, status: 400, rejected: 1, reason: "time: must be RFC 3339 with an offset"},
		{name: "user too long", body: ev(`"type":"login","user":"` + strings.Repeat("u", 129) + `"`), status: 400, rejected: 1, reason: "user: too long"},
		{name: "login without user", body: ev(`"type":"login"`), status: 400, rejected: 1, reason: "user: required for login"},
		{name: "platform unknown", body: ev(`"type":"login","user":"u1","platform":"beos"`), status: 400, rejected: 1, reason: `platform: must be one of`},
		{name: "message without user", body: ev(`"type":"message","channel":"c2c"`), status: 400, rejected: 1, reason: "user: required for message"},
		{name: "channel missing", body: ev(`"type":"message","user":"u1"`), status: 400, rejected: 1, reason: "channel: required"},
		{name: "channel unknown", body: ev(`"type":"message","user":"u1","channel":"sms"`), status: 400, rejected: 1, reason: `channel: must be one of [c2c group community live]; got "sms"`},
		{name: "count zero", body: ev(`"type":"message","user":"u1","channel":"c2c","count":0`), status: 400, rejected: 1, reason: "count: must be an integer >= 1"},
		{name: "op unknown", body: ev(`"type":"group","op":"rename","group":"g1","group_type":"Work"`), status: 400, rejected: 1, reason: "op: must be one of [create dissolve]"},
		{name: "group missing", body: ev(`"type":"group","op":"create","group_type":"Work"`), status: 400, rejected: 1, reason: "group: required"},
		{name: "group_type unknown", body: ev(`"type":"group","op":"create","group":"g1","group_type":"work"`), status: 400, rejected: 1, reason: "group_type: must be one of"},
		{name: "call without user", body: ev(`"type":"call","media":"audio","seconds":3`), status: 400, rejected: 1, reason: "user: required for call"},
		{name: "media unknown", body: ev(`"type":"call","user":"u1","media":"fax","seconds":3`), status: 400, rejected: 1, reason: "media: must be one of [audio video]"},
		{name: "seconds missing", body: ev(`"type":"call","user":"u1","media":"audio"`), status: 400, rejected: 1, reason: "seconds: required for call"},
		{name: "seconds negative", body: ev(`"type":"call","user":"u1","media":"audio","seconds":-1`), status: 400, rejected: 1, reason: "seconds: must be an integer >= 0"},
		{name: "call id empty", body: ev(`"type":"call","user":"u1","media":"audio","seconds":1,"call":""`), status: 400, rejected: 1, reason: "call: required"},
		{name: "edition unknown", body: ev(`"type":"plan","edition":"gold"`), status: 400, rejected: 1, reason: "edition: must be one of [developer standard premium]"},

		// limits
		{name: "oversize body", body: "[" + strings.Repeat(login()+",", 400) + login() + "]", status: 413, reason: "body larger than 32768 bytes"},
		{name: "oversize event", body: ev(`"type":"login","user":"u1","padding":"` + big + `"`), status: 400, rejected: 1, reason: "event too large"},
		{name: "oversize event among good ones", body: "[" + login() + "," + ev(`"type":"login","user":"u1","padding":"`+big+`"`) + "]", status: 202, accepted: 1, rejected: 1, published: 1, reason: "event too large"},

		// authorisation
		{name: "event of another app", body: "[" + login() + "," + strings.Replace(login(), "1400000001", "1400000002", 1) + "]", status: 403, rejected: 2, reason: "app: 1400000002 is not the signing app 1400000001"},
		{name: "signed by another app", app: otherApp, body: login(), status: 403, rejected: 1, reason: "not the signing app 1400000002"},

		// authentication
		{name: "app header missing", body: login(), mod: func(r *http.Request) { r.Header.Del(HeaderApp) }, status: 401, reason: "X-Immeter-App: required"},
		{name: "app unknown", body: login(), app: 1400000099, secret: []byte("guess"), status: 401, reason: authFailed},
		{name: "app not a number", body: login(), mod: func(r *http.Request) { r.Header.Set(HeaderApp, "im") }, status: 401, reason: authFailed},
		{name: "signature missing", body: login(), mod: func(r *http.Request) { r.Header.Del(HeaderSignature) }, status: 401, reason: "X-Immeter-Signature: required"},
		{name: "signature with the wrong secret", body: login(), secret: []byte("s3cret-two"), status: 401, reason: authFailed},
		{name: "signature not hex", body: login(), mod: func(r *http.Request) { r.Header.Set(HeaderSignature, "zz") }, status: 401, reason: authFailed},
		{name: "signature of another body", body: login(), mod: func(r *http.Request) {
			r.Header.Set(HeaderSignature, Sign(testSecrets[testApp], r.Header.Get(HeaderTimestamp), []byte(login())))
		}, status: 401, reason: authFailed},
		{name: "timestamp missing", body: login(), mod: func(r *http.Request) { r.Header.Del(HeaderTimestamp) }, status: 401, reason: "X-Immeter-Timestamp: required"},
		{name: "timestamp not a number", body: login(), mod: func(r *http.Request) { r.Header.Set(HeaderTimestamp, "yesterday") }, status: 401, reason: "must be Unix seconds"},
		{name: "replayed old request", body: login(), at: gwNow.Add(-5*time.Minute - time.Second), status: 401, reason: "outside ±5m0s"},
		{name: "timestamp in the future", body: login(), at: gwNow.Add(6 * time.Minute), status: 401, reason: "outside ±5m0s"},
		{name: "timestamp at the edge", body: login(), at: gwNow.Add(-5 * time.Minute), status: 202, accepted: 1, published: 1},
	}
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		g := newTestGateway(t, k.producer(t, topic, nil), nil)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				app, secret, at := uint32(testApp), c.secret, gwNow
				if c.app != 0 {
					app = c.app
				}
				if secret == nil {
					secret = testSecrets[app]
				}
				if !c.at.IsZero() {
					at = c.at
				}
				r := signedRequest(app, secret, at, []byte(c.body))
				if c.contentType != "" {
					r.Header.Set("Content-Type", c.contentType)
				}
				if c.mod != nil {
					c.mod(r)
				}
				before := k.count(t, topic)
				a := serve(t, g, r)
				if a.status != c.status {
					t.Fatalf("unexpected status; got %d; want %d; body %s", a.status, c.status, a.raw)
				}
				if c.reason != "" && !a.mentions(c.reason) {
					t.Fatalf("unexpected reason; want %q in %s", c.reason, a.raw)
				}
				if a.resp.Accepted != c.accepted || a.resp.Rejected != c.rejected {
					t.Fatalf("unexpected counts; got %d accepted, %d rejected; want %d, %d; body %s", a.resp.Accepted, a.resp.Rejected, c.accepted, c.rejected, a.raw)
				}
				if n := len(a.resp.Results); n != 0 && n != c.accepted+c.rejected {
					t.Fatalf("unexpected result count %d; body %s", n, a.raw)
				}
				for i, res := range a.resp.Results {
					if res.Index != i || (res.Status == StatusRejected) == (res.Reason == "") {
						t.Fatalf("malformed result %d: %+v", i, res)
					}
				}
				if got := k.count(t, topic) - before; got != c.published {
					t.Fatalf("unexpected records published; got %d; want %d", got, c.published)
				}
			})
		}
	})
}

func TestGatewayKafkaDown(t *testing.T) {
	p := newFakeKafka(t).producer(t, "down", func(c *ProducerConfig) { c.Brokers = []string{closedAddr(t)} })
	g := newTestGateway(t, p, func(c *GatewayConfig) { c.PublishTimeout = 200 * time.Millisecond })
	if a := serve(t, g, httptest.NewRequest(http.MethodGet, "/healthz", nil)); a.status != 200 {
		t.Fatalf("healthz before any write; got %d; want 200", a.status)
	}
	body := "[" + ev(`"type":"login","user":"u1"`) + "," + ev(`"type":"login"`) + "]"
	a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, []byte(body)))
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("unexpected status; got %d; want 503; body %s", a.status, a.raw)
	}
	if a.header.Get("Retry-After") == "" || !strings.Contains(a.resp.Error, "Kafka unavailable") {
		t.Fatalf("503 without Retry-After or reason: %v %s", a.header, a.raw)
	}
	if r := a.resp.Results[0]; r.Status != StatusRejected || !strings.HasPrefix(r.Reason, "kafka: ") {
		t.Fatalf("unexpected result for the unacknowledged event: %+v", r)
	}
	if r := a.resp.Results[1]; !strings.Contains(r.Reason, "user: required") {
		t.Fatalf("unexpected result for the invalid event: %+v", r)
	}
	if a.resp.Accepted != 0 || a.resp.Rejected != 2 {
		t.Fatalf("unexpected counts in %s", a.raw)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h := serve(t, g, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if h.status == 503 && strings.Contains(h.raw, "refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz with Kafka down; got %d %s; want 503 naming the error", h.status, h.raw)
		}
	}
	// The event the gateway gave up waiting for is still owed: Close says so.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, ErrUndelivered) || !strings.Contains(err.Error(), "1 events") {
		t.Fatalf("unexpected Close error %v; want ErrUndelivered for 1 event", err)
	}
}

func TestGatewayHealthz(t *testing.T) {
	k := newFakeKafka(t)
	p := k.producer(t, k.topic(t), nil)
	g := newTestGateway(t, p, nil)
	a := serve(t, g, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if a.status != 200 || !strings.Contains(a.raw, `"status":"ok"`) {
		t.Fatalf("unexpected healthz; got %d %s", a.status, a.raw)
	}
	p.Close(context.Background())
	a = serve(t, g, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if a.status != 503 || !strings.Contains(a.raw, "producer closed") {
		t.Fatalf("unexpected healthz after Close; got %d %s", a.status, a.raw)
	}
	// A closed producer turns posts into 503 too.
	a = serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, []byte(ev(`"type":"login","user":"u1"`))))
	if a.status != 503 || !a.mentions("producer closed") {
		t.Fatalf("unexpected answer with a closed producer; got %d %s", a.status, a.raw)
	}
}

func TestGatewayConfig(t *testing.T) {
	f := func(tune func(*GatewayConfig), want string) {
		t.Helper()
		cfg := DefaultGatewayConfig()
		cfg.Secrets = testSecrets
		tune(&cfg)
		_, err := NewGateway(cfg, &Producer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(func(c *GatewayConfig) { c.Secrets = nil }, "GatewayConfig.Secrets: required")
	f(func(c *GatewayConfig) { c.Secrets = map[uint32][]byte{7: nil} }, "GatewayConfig.Secrets: app 7: empty secret")
	f(func(c *GatewayConfig) { c.MaxBodyBytes = -1 }, "GatewayConfig.MaxBodyBytes")
	f(func(c *GatewayConfig) { c.MaxEventBytes = -1 }, "GatewayConfig.MaxEventBytes")
	f(func(c *GatewayConfig) { c.MaxClockSkew = -time.Minute }, "GatewayConfig.MaxClockSkew")
	f(func(c *GatewayConfig) { c.PublishTimeout = -1 }, "GatewayConfig.PublishTimeout")
	f(func(c *GatewayConfig) { c.WriteTimeout = 5 * time.Second }, "GatewayConfig.WriteTimeout: must exceed PublishTimeout")
	if _, err := NewGateway(GatewayConfig{Secrets: testSecrets}, nil); err == nil {
		t.Fatalf("NewGateway accepted a nil producer")
	}
}

func TestLoadSecrets(t *testing.T) {
	s, err := LoadSecrets(filepath.Join("testdata", "secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || string(s[1400000001]) != "correct horse battery staple" || string(s[1400000002]) != "a=b#c" {
		t.Fatalf("unexpected secrets: %d apps", len(s)) // never print secrets
	}
	f := func(text, want string) {
		t.Helper()
		_, err := ParseSecrets(strings.NewReader(text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error reveals the secret: %v", err)
		}
	}
	f("# c\n1400000001 hunter2\n", "line 2: want app=secret")
	f("0=hunter2\n", "line 1: app must be an SDKAppID")
	f("4294967296=hunter2\n", "line 1: app must be an SDKAppID")
	f("1=\n", "line 1: app 1: empty secret")
	f("1=hunter2\n1=hunter2\n", "line 2: app 1: listed twice")
	if _, err := LoadSecrets(filepath.Join("testdata", "nope.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unexpected error for a missing file: %v", err)
	}
}

// TestGatewayServeDrains stops Serve while a request waits for Kafka: the
// request still gets its 202, new connections are refused, Serve returns.
func TestGatewayServeDrains(t *testing.T) {
	k := newFakeKafka(t)
	topic := k.topic(t)
	// A long linger keeps the request in flight for a while.
	p := k.producer(t, topic, func(c *ProducerConfig) { c.Linger = 300 * time.Millisecond })
	g := newTestGateway(t, p, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()

	body := []byte(ev(`"type":"login","user":"u1"`))
	req := signedRequest(testApp, testSecrets[testApp], gwNow, body)
	httpReq, _ := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(body))
	httpReq.Header = req.Header
	answered := make(chan int, 1)
	start := time.Now()
	go func() {
		res, err := http.DefaultClient.Do(httpReq)
		if err != nil {
			t.Errorf("in-flight request: %v", err)
			answered <- 0
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		answered <- res.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the request is waiting for the linger
	stop()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) before the in-flight request was answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	if code := <-answered; code != http.StatusAccepted {
		t.Fatalf("in-flight request; got %d; want 202", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("request answered before its linger: the test did not test draining")
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatalf("gateway still answers after Serve returned")
	}
	if n := k.count(t, topic); n != 1 {
		t.Fatalf("unexpected records; got %d; want 1", n)
	}
}

// TestSameOnTopicFromEveryPath publishes the same event through the library,
// the gateway and a plain kafka-go writer (standing in for a third-party
// client such as kcat) and finds them identical on the topic but for the id.
func TestSameOnTopicFromEveryPath(t *testing.T) {
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		p := k.producer(t, topic, nil)
		g := newTestGateway(t, p, nil)
		base := NewCall(testApp, "u-42", "video", 125, time.Date(2026, 11, 25, 21, 0, 0, 123e6, time.FixedZone("", 8*3600)))
		base.CallID = "call-9"

		lib := base
		lib.ID = "via-library"
		if errs, err := p.PublishSync(context.Background(), lib); err != nil || errs[0] != nil {
			t.Fatalf("library: %v %v", err, errs)
		}

		// The gateway gets hand-written JSON with its own field order.
		body := `{"type":"call","seconds":125,"media":"video","user":"u-42","call":"call-9","time":"2026-11-25T21:00:00.123+08:00","app":1400000001,"id":"via-gateway"}`
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, []byte(body))); a.status != 202 {
			t.Fatalf("gateway: %d %s", a.status, a.raw)
		}

		w := &kafka.Writer{Addr: kafka.TCP(k.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{Consistent: true},
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		raw := `{"id":"via-raw-writer","type":"call","app":1400000001,"time":"2026-11-25T13:00:00.123Z","user":"u-42","media":"video","seconds":125,"call":"call-9"}`
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte("1400000001"), Value: []byte(raw)}); err != nil {
			t.Fatalf("raw writer: %v", err)
		}
		w.Close()

		recs := k.read(t, topic)
		if len(recs) != 3 {
			t.Fatalf("unexpected record count; got %d; want 3", len(recs))
		}
		// kcat, the usual third-party client, when it is installed (.ci/kafka.sh
		// installs it). Its default partitioner is not kafka-go's, so it is
		// told the partition the others chose.
		if kcat, err := exec.LookPath("kcat"); err == nil {
			line := "1400000001\t" + `{"id":"via-kcat","type":"call","app":1400000001,"time":"2026-11-25T21:00:00.123+08:00","user":"u-42","media":"video","seconds":125,"call":"call-9"}` + "\n"
			cmd := exec.Command(kcat, "-P", "-b", strings.Join(k.brokers, ","), "-t", topic, "-K", "\t",
				"-p", strconv.Itoa(int(recs[0].Partition)), "-X", "acks=all")
			cmd.Stdin = strings.NewReader(line)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("kcat: %v: %s", err, out)
			}
			if recs = k.read(t, topic); len(recs) != 4 {
				t.Fatalf("unexpected record count after kcat; got %d; want 4", len(recs))
			}
		} else {
			t.Log("kcat not installed: the third-party path is tested with kafka-go's writer only (.ci/kafka.sh start installs kcat)")
		}
		var want *schemas.Event
		var wantFields map[string]any
		partition := recs[0].Partition
		for _, r := range recs {
			if string(r.Key) != "1400000001" || r.Partition != partition {
				t.Fatalf("record %s: key %q partition %d; want key 1400000001 on partition %d like the others", r.Value, r.Key, r.Partition, partition)
			}
			e, err := schemas.DecodeEvent(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			var fields map[string]any
			if err := json.Unmarshal(r.Value, &fields); err != nil {
				t.Fatal(err)
			}
			delete(fields, "id")
			delete(fields, "time") // same instant, written with different offsets; compared below
			e.ID = ""
			if want == nil {
				want, wantFields = &e, fields
				continue
			}
			if !e.Time.Equal(want.Time) {
				t.Fatalf("record %s: time %s; want %s", r.Value, e.Time, want.Time)
			}
			e.Time = want.Time
			if e != *want {
				t.Fatalf("record %s decodes to %+v; want %+v", r.Value, e, *want)
			}
			if fmt.Sprint(fields) != fmt.Sprint(wantFields) {
				t.Fatalf("record %s has fields %v; want %v", r.Value, fields, wantFields)
			}
		}
	})
}

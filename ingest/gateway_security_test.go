package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// captureLog sends slog's default logger to a buffer at info and above
// until the test ends.
func captureLog(t *testing.T) *syncBuffer {
	t.Helper()
	var buf syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGatewayAuthOneAnswer checks that an unknown app and a known app with
// a wrong signature get the same answer, that the failure is logged at info
// with the app and the client address, and counted.
func TestGatewayAuthOneAnswer(t *testing.T) {
	logs := captureLog(t)
	k := newFakeKafka(t)
	g := newTestGateway(t, k.producer(t, k.topic(t), nil), nil)
	body := []byte(ev(`"type":"login","user":"u1"`))
	unknown := serve(t, g, signedRequest(1400000099, []byte("guess"), gwNow, body))
	wrong := serve(t, g, signedRequest(testApp, []byte("guess"), gwNow, body))
	if unknown.status != http.StatusUnauthorized || unknown.status != wrong.status || unknown.raw != wrong.raw {
		t.Fatalf("unknown app and bad signature answered differently:\n%d %s\n%d %s", unknown.status, unknown.raw, wrong.status, wrong.raw)
	}
	if strings.Contains(unknown.raw, "unknown app\"") || strings.Contains(unknown.raw, "does not match") {
		t.Fatalf("answer tells which failed: %s", unknown.raw)
	}
	out := logs.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "authentication failed") ||
		!strings.Contains(out, "app=1400000099") || !strings.Contains(out, "remote=192.0.2.1:1234") {
		t.Fatalf("authentication failure not logged at info with app and remote address:\n%s", out)
	}
	if strings.Contains(out, "guess") || strings.Contains(out, "s3cret") {
		t.Fatalf("log reveals a secret:\n%s", out)
	}
	// Rate-limited: a burst logs one line, the next one says how many were not logged.
	for range 50 {
		serve(t, g, signedRequest(testApp, []byte("guess"), gwNow, body))
	}
	if n := strings.Count(logs.String(), "authentication failed"); n > 2 {
		t.Fatalf("unexpected authentication log lines for a burst of 52 failures; got %d; want at most 2", n)
	}
	if got := g.Stats().AuthFailures; got != 52 {
		t.Fatalf("unexpected AuthFailures; got %d; want 52", got)
	}
}

// TestGatewayReplay sends the same signed request again, at once and later
// in the window, including one dated in the future: only the first is
// published.
func TestGatewayReplay(t *testing.T) {
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		now := gwNow
		var mu sync.Mutex
		g := newTestGateway(t, k.producer(t, topic, nil), func(c *GatewayConfig) {
			c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		})
		set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
		var events []string
		for range 20 {
			events = append(events, ev(`"type":"login","user":"u1"`))
		}
		body := []byte("[" + strings.Join(events, ",") + "]")

		// 50 concurrent copies of one request: one 202, the others 409.
		var accepted, replayed atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, body))
				switch a.status {
				case http.StatusAccepted:
					accepted.Add(1)
				case http.StatusConflict:
					replayed.Add(1)
				default:
					t.Errorf("unexpected status %d: %s", a.status, a.raw)
				}
			})
		}
		wg.Wait()
		if accepted.Load() != 1 || replayed.Load() != 49 {
			t.Fatalf("unexpected answers to 50 copies; got %d accepted, %d replays; want 1, 49", accepted.Load(), replayed.Load())
		}
		// Later in the window: still refused.
		set(gwNow.Add(4*time.Minute + 59*time.Second))
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, body)); a.status != http.StatusConflict {
			t.Fatalf("replay 5 minutes later; got %d; want 409: %s", a.status, a.raw)
		}
		// A request dated 5 minutes ahead is valid for 10 minutes: refused
		// again at the end of that.
		future := []byte(ev(`"type":"login","user":"u2"`))
		set(gwNow)
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow.Add(5*time.Minute), future)); a.status != http.StatusAccepted {
			t.Fatalf("request dated 5 minutes ahead; got %d: %s", a.status, a.raw)
		}
		set(gwNow.Add(10 * time.Minute))
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow.Add(5*time.Minute), future)); a.status != http.StatusConflict {
			t.Fatalf("replay of a request dated ahead, 10 minutes later; got %d; want 409: %s", a.status, a.raw)
		}
		// The same events signed anew are a new request (dedup by id downstream).
		set(gwNow)
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow.Add(time.Second), body)); a.status != http.StatusAccepted {
			t.Fatalf("same body signed anew; got %d: %s", a.status, a.raw)
		}
		if n := k.count(t, topic); n != 20+1+20 {
			t.Fatalf("unexpected records on the topic; got %d; want 41", n)
		}
		if got := g.Stats().Replays; got != 49+1+1 {
			t.Fatalf("unexpected Replays; got %d; want 51", got)
		}
	})
}

func TestReplayCache(t *testing.T) {
	c := newReplayCache(10*time.Minute, 3)
	t0 := gwNow
	key := func(i byte) replayKey { return replayKey{i} }
	f := func(k replayKey, at time.Time, wantAdded bool, wantFull bool) {
		t.Helper()
		added, full := c.add(k, at)
		if added != wantAdded || (full > 0) != wantFull {
			t.Fatalf("unexpected add(%v) at %s; got added %v full %s; want %v %v", k[0], at.Sub(t0), added, full, wantAdded, wantFull)
		}
	}
	f(key(1), t0, true, false)
	f(key(1), t0.Add(9*time.Minute), false, false)
	f(key(2), t0.Add(9*time.Minute), true, false)
	f(key(3), t0.Add(9*time.Minute), true, false)
	f(key(4), t0.Add(9*time.Minute), false, true) // full
	// At 10 minutes the first generation ages; all three are still known.
	f(key(1), t0.Add(10*time.Minute), false, false)
	f(key(3), t0.Add(19*time.Minute), false, false)
	// At 20 minutes what was added before 10 is forgotten.
	f(key(1), t0.Add(20*time.Minute), true, false)
	c.forget(key(1))
	f(key(1), t0.Add(20*time.Minute), true, false)
}

// TestGatewayRateLimit drives one app over its rate: 429 with Retry-After,
// nothing published, other apps unaffected, admitted again once the bucket
// refilled.
func TestGatewayRateLimit(t *testing.T) {
	k := newFakeKafka(t)
	topic := k.topic(t)
	now := gwNow
	g := newTestGateway(t, k.producer(t, topic, nil), func(c *GatewayConfig) {
		c.AppRate, c.AppBurst = 2, 5
		c.Now = func() time.Time { return now }
	})
	three := func(app uint32) []byte {
		var evs []string
		for range 3 {
			evs = append(evs, strings.Replace(ev(`"type":"login","user":"u1"`), strconv.Itoa(testApp), strconv.Itoa(int(app)), 1))
		}
		return []byte("[" + strings.Join(evs, ",") + "]")
	}
	post := func(app uint32, want int) answer {
		t.Helper()
		a := serve(t, g, signedRequest(app, testSecrets[app], now, three(app)))
		if a.status != want {
			t.Fatalf("unexpected status; got %d; want %d: %s", a.status, want, a.raw)
		}
		return a
	}
	post(testApp, 202) // 5 → 2
	post(testApp, 202) // 2 → -1
	a := post(testApp, 429)
	if ra := a.header.Get("Retry-After"); ra != "1" {
		t.Fatalf("unexpected Retry-After; got %q; want 1", ra)
	}
	post(otherApp, 202)
	now = now.Add(time.Second) // -1 → 1
	post(testApp, 202)
	if n := k.count(t, topic); n != 4*3 {
		t.Fatalf("unexpected records; got %d; want 12", n)
	}
	if got := g.Stats().RateLimited; got != 1 {
		t.Fatalf("unexpected RateLimited; got %d; want 1", got)
	}
}

// TestGatewayRetryAfterKafkaFailure checks that a request answered 503 for
// want of Kafka can be retried unchanged (it is not taken for a replay).
func TestGatewayRetryAfterKafkaFailure(t *testing.T) {
	p := newFakeKafka(t).producer(t, "down", func(c *ProducerConfig) { c.Brokers = []string{closedAddr(t)} })
	g := newTestGateway(t, p, func(c *GatewayConfig) { c.PublishTimeout = 100 * time.Millisecond })
	body := []byte(ev(`"type":"login","user":"u1"`))
	for i := range 2 {
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, body)); a.status != http.StatusServiceUnavailable {
			t.Fatalf("attempt %d: unexpected status; got %d; want 503: %s", i, a.status, a.raw)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p.Close(ctx)
}

// TestGatewayMemoryBound opens hostile connections to an in-process gateway
// on loopback and measures its heap while they are held: connections that
// send whole bodies of the largest size with a bad signature, then more
// connections than MaxConnections that announce such a body of a known app
// with a bad signature and send 10 bytes. The heap must stay under the bound
// the README states: 64 KiB a connection and 8 × INGEST_MAX_BODY_BYTES a
// request slot, over what an idle gateway holds. (Before the bound, each
// announced body was allocated in full: 200 × 1 MiB here.)
func TestGatewayMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a few hundred loopback connections")
	}
	const (
		slow     = 200 // connections that send 10 bytes of a maxBody body
		full     = 24  // connections that send a whole maxBody body
		maxConns = 160
		maxReqs  = 8
		maxBody  = 1 << 20
	)
	k := newFakeKafka(t)
	g := newTestGateway(t, k.producer(t, k.topic(t), nil), func(c *GatewayConfig) {
		c.MaxBodyBytes = maxBody
		c.MaxConnections, c.MaxRequests = maxConns, maxReqs
		c.ReadTimeout = 20 * time.Second
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	addr := ln.Addr().String()

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	base := heap()
	ts := strconv.FormatInt(gwNow.Unix(), 10)
	head := func(n int) string {
		return fmt.Sprintf("POST /v1/events HTTP/1.1\r\nHost: x\r\n%s: %d\r\n%s: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
			HeaderApp, testApp, HeaderTimestamp, ts, HeaderSignature, strings.Repeat("ab", 32), n)
	}
	var conns []net.Conn
	var mu sync.Mutex
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		stop()
		<-served
	}()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Errorf("dial: %v", err)
			return nil
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return c
	}
	// Sample the heap until the attack is over.
	var peak uint64
	sampling := func(done <-chan struct{}) {
		for {
			peak = max(peak, heap())
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// Whole bodies with a bad signature: read (MaxRequests at a time), refused.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var wg sync.WaitGroup
	for range full {
		wg.Go(func() {
			c := dial()
			if c == nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.WriteString(c, head(maxBody)); err != nil {
				return
			}
			for sent := 0; sent < maxBody; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return // refused or cut: fine
				}
			}
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != http.StatusUnauthorized {
				t.Errorf("whole body with a bad signature: %v %v; want 401", err, res)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	sampling(done)
	// Then bodies announced at maxBody, 10 bytes sent, held open.
	for range slow {
		if c := dial(); c != nil {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, head(maxBody)+"0123456789")
		}
	}
	settled := make(chan struct{})
	time.AfterFunc(time.Second, func() { close(settled) })
	sampling(settled)
	bound := uint64(maxConns*(64<<10) + maxReqs*8*maxBody)
	growth := int64(peak) - int64(base)
	t.Logf("heap grew %.1f MiB under %d slow and %d full hostile connections; bound %.1f MiB", float64(growth)/(1<<20), slow, full, float64(bound)/(1<<20))
	if growth > int64(bound) {
		t.Fatalf("gateway heap grew %d bytes; bound %d", growth, bound)
	}
	// The gateway still answers a good request once the hostile ones go.
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	mu.Unlock()
	body := []byte(ev(`"type":"login","user":"u1"`))
	req := signedRequest(testApp, testSecrets[testApp], gwNow, body)
	hr, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/events", bytes.NewReader(body))
	hr.Header = req.Header
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Do(hr)
	if err != nil {
		t.Fatalf("good request after the attack: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("good request after the attack; got %d; want 202", res.StatusCode)
	}
}

func TestLoadSecretsWarnsWhenReadableByOthers(t *testing.T) {
	logs := captureLog(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets")
	if err := os.WriteFile(path, []byte("1400000001=hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecrets(path); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "readable") {
		t.Fatalf("warning for a 0600 file: %s", logs.String())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecrets(path); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "readable by others") || !strings.Contains(out, path) {
		t.Fatalf("no warning for a 0644 secrets file: %s", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("log reveals the secret: %s", out)
	}
}

// TestGatewayRequestMemory measures what an authenticated request of the
// smallest events holds while it is decoded and published, the worst case
// per request slot: with the body itself and the buffer it grew from, it
// must stay within the 8 × INGEST_MAX_BODY_BYTES a slot the README states.
func TestGatewayRequestMemory(t *testing.T) {
	k := newFakeKafka(t)
	const maxBody = 4 << 20
	g := newTestGateway(t, k.producer(t, k.topic(t), nil), func(c *GatewayConfig) { c.MaxBodyBytes = maxBody })
	var b strings.Builder
	b.WriteString("[")
	for n := 0; b.Len() < maxBody-200; n++ {
		if n > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":"%d","type":"plan","app":%d,"time":"2026-11-25T21:00:00Z","edition":"premium"}`, n, testApp)
	}
	b.WriteString("]")
	body := []byte(b.String())
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	raws, err := splitEvents(body, "")
	if err != nil {
		t.Fatal(err)
	}
	res, msgs, valid, _ := g.decode(raws, testApp)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	held := float64(m1.HeapInuse-m0.HeapInuse) / float64(len(body))
	t.Logf("%d events in %d bytes: decoding holds %.2f × the body", len(raws), len(body), held)
	if held > 6 {
		t.Fatalf("decoding a body holds %.2f × its size; the README's bound assumes at most 6", held)
	}
	runtime.KeepAlive(res)
	runtime.KeepAlive(msgs)
	runtime.KeepAlive(valid)
}

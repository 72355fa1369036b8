package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// cutProxy forwards ClickHouse connections. After a client sends a watched
// statement, it measures the server's response; when a cut is armed, it
// passes only the first bytes of that response and closes the connection,
// as a network or server failure in the middle of a result does.
type cutProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	pattern  []byte
	cutAfter int        // bytes of the response passed before a cut
	cuts     int        // responses still to cut
	done     int        // responses cut
	last     *proxyConn // the connection of the last watched statement
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// watch sets the statement to watch (a fragment of its text) and cuts the
// next n responses to it after cutAfter bytes.
func (p *cutProxy) watch(statement string, n, cutAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.cuts, p.cutAfter, p.last = []byte(statement), n, cutAfter, nil
}

// stats returns the responses cut so far and the size of the last response
// to the watched statement (whole once the client has read it).
func (p *cutProxy) stats() (cut, size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil {
		p.last.mu.Lock()
		size = p.last.counted
		p.last.mu.Unlock()
	}
	return p.done, size
}

// proxyConn is the state of one forwarded connection.
type proxyConn struct {
	mu       sync.Mutex
	watching bool // the watched statement was sent; its response is counted
	counted  int  // bytes of that response so far
	cut      bool // cut the response after left more bytes
	left     int
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxyConn{}
		go p.upstream(c, s, pc)
		go p.downstream(c, s, pc)
	}
}

// upstream forwards what the client sends, watching for the statement.
func (p *cutProxy) upstream(c, s net.Conn, pc *proxyConn) {
	defer s.Close()
	defer c.Close()
	buf := make([]byte, 64<<10)
	var tail []byte
	for {
		n, err := c.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			p.mu.Lock()
			pc.mu.Lock()
			if pc.watching && pc.counted > 0 { // a new request: the response ended
				pc.watching = false
			}
			// A match must end in the new bytes: the tail was matched before.
			if i := bytes.LastIndex(seen, p.pattern); len(p.pattern) > 0 && i >= 0 && i+len(p.pattern) > len(tail) {
				p.last = pc
				pc.watching, pc.counted = true, 0
				pc.cut, pc.left = p.cuts > 0, p.cutAfter
			}
			pc.mu.Unlock()
			p.mu.Unlock()
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
			tail = append(tail[:0], buf[max(0, n-256):n]...)
		}
		if err != nil {
			return
		}
	}
}

// downstream forwards the server's responses, counting or cutting the
// watched one.
func (p *cutProxy) downstream(c, s net.Conn, pc *proxyConn) {
	defer c.Close()
	defer s.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			p.mu.Lock()
			pc.mu.Lock()
			out := buf[:n]
			cut := false
			if pc.watching {
				// Only a response longer than cutAfter is cut (and counted
				// as cut): a shorter one, say of an empty month, passes.
				if pc.cut && n > pc.left && p.cuts > 0 {
					out, cut = buf[:pc.left], true
					p.cuts--
					p.done++
				}
				pc.left -= len(out)
				pc.counted += len(out)
			}
			pc.mu.Unlock()
			p.mu.Unlock()
			if _, err := c.Write(out); err != nil {
				return
			}
			if cut {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCutStream cuts ClickHouse results in the middle, at several points,
// on the reads a billing record is made from: no record is stored or
// published, the error is returned, and the rollup daemon retries until it
// publishes the exact figures. Repair and Migrate stop on a cut read too.
func TestCutStream(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 11, 5, 8, 0, 0, 0, loc))
	const apps, users = 20, 50
	oct := schemas.Month{Year: 2026, Month: time.October}

	agg, err := aggregate.New(testAggregateConfig(env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 50*time.Millisecond, clock.Now
	}), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(runCtx) }()
	defer func() { stop(); <-aggDone }()
	var msgs []kafka.Message
	for a := range apps {
		app := 1400000200 + a
		for u := range users {
			e := schemas.Event{ID: fmt.Sprintf("c-%d-%d", a, u), Type: schemas.Login, App: uint32(app), User: fmt.Sprintf("u%d", u),
				Time: time.Date(2026, 10, 1+u%3, 9, 0, 0, 0, loc)}
			b, _ := json.Marshal(e)
			msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(app)), Value: b})
		}
	}
	env.produce(ctx, t, env.events, msgs)
	env.waitAggregated(ctx, t, env.events)

	p := newCutProxy(t, env.ch.Addr)
	cfg := env.ch
	cfg.Addr = p.addr()

	// Migrate: a cut read of the applied migrations is an error.
	p.watch("SELECT version FROM schema_migrations", 0, 0)
	conn, err := schemas.OpenClickHouse(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, size := p.stats(); size == 0 {
		t.Fatal("the proxy did not see the schema_migrations read")
	}
	_, size := p.stats()
	p.watch("SELECT version FROM schema_migrations", 1, size/2)
	if conn, err := schemas.OpenClickHouse(ctx, cfg); err == nil {
		conn.Close()
		t.Errorf("Migrate: a read cut after %d of %d bytes was not an error", size/2, size)
	}

	conn, err = schemas.OpenClickHouse(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location, c.Now = loc, clock.Now }), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	billed := func() (stored, published int) {
		var n uint64
		if err := env.conn.QueryRow(ctx, "SELECT count() FROM billing_records").Scan(&n); err != nil {
			t.Fatal(err)
		}
		for _, o := range env.endOffsets(ctx, t, env.billing) {
			published += int(o)
		}
		return int(n), published
	}

	for _, stmt := range []string{"FROM user_days", "FROM user_sketches", "FROM daily_usage", "FROM plan_changes"} {
		p.watch(stmt, 0, 0)
		usage, err := rollup.ReadMonth(ctx, conn, oct, loc)
		if err != nil {
			t.Fatal(err)
		}
		if len(usage) != apps || usage[1400000200].Usage.MAU != users {
			t.Fatalf("uncut read: %d apps, MAU %d", len(usage), usage[1400000200].Usage.MAU)
		}
		_, size := p.stats()
		if size == 0 {
			t.Fatalf("the proxy did not see %q", stmt)
		}
		for _, at := range []int{0, size / 4, size / 2, size * 3 / 4} {
			before, _ := p.stats()
			p.watch(stmt, 1, at)
			res, err := r.Publish(ctx, oct, rollup.Auto)
			if cut, _ := p.stats(); cut != before+1 {
				t.Fatalf("%q: the proxy did not cut the response after %d of %d bytes (Publish: %+v, %v)", stmt, at, size, res, err)
			}
			if err == nil {
				t.Errorf("%q cut after %d of %d bytes: Publish returned no error (%+v)", stmt, at, size, res)
			}
			if stored, published := billed(); stored != 0 || published != 0 {
				t.Fatalf("%q cut after %d of %d bytes: %d records stored, %d published; want none", stmt, at, size, stored, published)
			}
		}
	}

	// The daemon: the first three reads of user_days are cut; it retries
	// and publishes the exact finals once.
	p.watch("FROM user_days", 0, 0)
	if _, err := rollup.ReadMonth(ctx, conn, oct, loc); err != nil {
		t.Fatal(err)
	}
	cutBefore, size := p.stats()
	p.watch("FROM user_days", 3, size/2)
	rollDone := make(chan error, 1)
	rollCtx, stopRoll := context.WithCancel(ctx)
	go func() { rollDone <- r.Run(rollCtx, 20*time.Millisecond) }()
	deadline := time.Now().Add(30 * time.Second)
	for _, published := billed(); published < apps && time.Now().Before(deadline); _, published = billed() {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stopRoll()
	if err := <-rollDone; err != nil {
		t.Fatal(err)
	}
	if cut, _ := p.stats(); cut != cutBefore+3 {
		t.Errorf("unexpected cuts during Run; got %d; want 3", cut-cutBefore)
	}
	recs := env.readBilling(ctx, t, apps)
	for _, rec := range recs {
		if rec.Status != schemas.Final || rec.Revision != 1 || rec.Usage.MAU != users {
			t.Errorf("app %d: got %s revision %d MAU %d; want final 1 MAU %d", rec.App, rec.Status, rec.Revision, rec.Usage.MAU, users)
		}
	}

	// Repair: a cut read of the unpublished revisions is an error, not a
	// partial republication.
	if err := env.conn.Exec(ctx, "ALTER TABLE billing_published DELETE WHERE 1"); err != nil {
		t.Fatal(err)
	}
	waitMutations(ctx, t, env)
	p.watch("any(record) FROM billing_records", 0, 0)
	if err := r.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if _, published := billed(); published != 2*apps {
		t.Fatalf("Repair republished %d records; want %d", published-apps, apps)
	}
	if err := env.conn.Exec(ctx, "ALTER TABLE billing_published DELETE WHERE 1"); err != nil {
		t.Fatal(err)
	}
	waitMutations(ctx, t, env)
	_, size = p.stats()
	for _, at := range []int{0, size / 2} {
		p.watch("any(record) FROM billing_records", 1, at)
		if err := r.Repair(ctx); err == nil {
			t.Errorf("Repair: a read cut after %d of %d bytes was not an error", at, size)
		}
	}
	if _, published := billed(); published != 2*apps {
		t.Errorf("cut Repair reads published %d records", published-2*apps)
	}
	// The daemon retries Repair until a read is whole, then republishes all.
	p.watch("any(record) FROM billing_records", 2, size/2)
	cutBefore, _ = p.stats()
	rollCtx, stopRoll = context.WithCancel(ctx)
	go func() { rollDone <- r.Run(rollCtx, 20*time.Millisecond) }()
	deadline = time.Now().Add(30 * time.Second)
	for _, published := billed(); published < 3*apps && time.Now().Before(deadline); _, published = billed() {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stopRoll()
	if err := <-rollDone; err != nil {
		t.Fatal(err)
	}
	if cut, _ := p.stats(); cut != cutBefore+2 {
		t.Errorf("unexpected cuts of Repair during Run; got %d; want 2", cut-cutBefore)
	}
	if _, published := billed(); published != 3*apps {
		t.Errorf("Run republished %d records; want %d", published-2*apps, apps)
	}
}

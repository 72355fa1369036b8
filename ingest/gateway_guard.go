package ingest

import (
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// GatewayStats counts what the gateway refused to protect itself, for
// metrics (read them with Gateway.Stats).
type GatewayStats struct {
	AuthFailures uint64 // 401: unknown app, bad or missing signature, timestamp out of the window
	Replays      uint64 // 409: a signature already used
	RateLimited  uint64 // 429: an app over INGEST_APP_RATE
	ReplayFull   uint64 // 503: the replay cache was full
}

type gatewayCounters struct {
	authFailures, replays, rateLimited, replayFull atomic.Uint64
}

func (c *gatewayCounters) stats() GatewayStats {
	return GatewayStats{
		AuthFailures: c.authFailures.Load(),
		Replays:      c.replays.Load(),
		RateLimited:  c.rateLimited.Load(),
		ReplayFull:   c.replayFull.Load(),
	}
}

// rateLimiter is a token bucket of events per app. A request is let in
// while the app's bucket holds any token and is then charged its events,
// which may leave the bucket in debt: an app's events average at most rate
// a second, with bursts of burst events plus one request.
type rateLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	apps        map[uint32]*bucket // one per app of the secrets file at most
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), apps: map[uint32]*bucket{}}
}

// refill returns app's bucket brought up to now; l.mu is held.
func (l *rateLimiter) refill(app uint32, now time.Time) *bucket {
	b := l.apps[app]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.apps[app] = b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
	return b
}

// wait returns 0 when app may send a request now, else how long until it
// may.
func (l *rateLimiter) wait(app uint32, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(app, now)
	if b.tokens > 0 {
		return 0
	}
	return time.Duration(math.Ceil((-b.tokens + 1) / l.rate * float64(time.Second)))
}

// charge takes n events from app's bucket.
func (l *rateLimiter) charge(app uint32, n int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(app, now).tokens -= float64(n)
}

// replayCache remembers the signatures of accepted requests for at least
// span (twice the clock skew: as long as their timestamp is acceptable), in
// two generations: lookups see both; every span the older is dropped. It
// holds at most max signatures of 16 bytes (the first half of the HMAC).
type replayCache struct {
	span      time.Duration
	max       int
	mu        sync.Mutex
	cur, prev map[replayKey]struct{}
	rotated   time.Time
}

type replayKey [16]byte

func newReplayCache(span time.Duration, max int) *replayCache {
	return &replayCache{span: span, max: max, cur: map[replayKey]struct{}{}, prev: map[replayKey]struct{}{}}
}

// rotate drops what is older than span; c.mu is held.
func (c *replayCache) rotate(now time.Time) {
	if c.rotated.IsZero() {
		c.rotated = now
	}
	switch d := now.Sub(c.rotated); {
	case d >= 2*c.span:
		c.prev, c.cur, c.rotated = map[replayKey]struct{}{}, map[replayKey]struct{}{}, now
	case d >= c.span:
		c.prev, c.cur, c.rotated = c.cur, map[replayKey]struct{}{}, now
	}
}

func (c *replayCache) seen(k replayKey, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate(now)
	_, a := c.cur[k]
	_, b := c.prev[k]
	return a || b
}

// add records k; it returns false if k was there already, and full (with
// how long until room is made) when the cache cannot take it.
func (c *replayCache) add(k replayKey, now time.Time) (added bool, full time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate(now)
	_, a := c.cur[k]
	_, b := c.prev[k]
	if a || b {
		return false, 0
	}
	if len(c.cur)+len(c.prev) >= c.max {
		return false, max(time.Second, c.rotated.Add(c.span).Sub(now))
	}
	c.cur[k] = struct{}{}
	return true, 0
}

// forget removes k, so that a request that failed for want of Kafka can be
// retried unchanged.
func (c *replayCache) forget(k replayKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, k)
	delete(c.prev, k)
}

// authLog logs authentication failures at info, at most one line a second;
// the next line says how many were not logged.
type authLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *authLog) log(app, remote, reason string) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	slog.Info("ingest: authentication failed", "app", app, "remote", remote, "reason", reason, "not_logged_since_last", n)
}

// limitListener accepts at most n connections at a time; Accept waits for
// one to close. Connections beyond n wait in the kernel's backlog, costing
// the gateway nothing.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

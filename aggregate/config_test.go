package aggregate

import (
	"strings"
	"testing"
	"time"
)

// TestConfigKeepsZeros: New honours a zero MAX_EVENT_FUTURE and rejects the
// zeros that cannot work, by the name of the setting.
func TestConfigKeepsZeros(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers, cfg.MaxFuture = []string{"127.0.0.1:9"}, 0
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.MaxFuture != 0 {
		t.Fatalf("MAX_EVENT_FUTURE=0 not honoured; got %s", a.cfg.MaxFuture)
	}
	f := func(set func(*Config), want string) {
		t.Helper()
		c := DefaultConfig()
		c.Brokers = []string{"127.0.0.1:9"}
		set(&c)
		if _, err := New(c, nil); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want %q", err, want)
		}
	}
	f(func(c *Config) { c.FlushInterval = 0 }, "FLUSH_INTERVAL: must be > 0")
	f(func(c *Config) { c.MaxPast = 0 }, "MAX_EVENT_AGE: must be > 0")
	f(func(c *Config) { c.SessionTimeout = 0 }, "AGGREGATE_SESSION_TIMEOUT: must be >= 6s")
	f(func(c *Config) { c.SessionTimeout = 5 * time.Second }, "AGGREGATE_SESSION_TIMEOUT: must be >= 6s")
	f(func(c *Config) { c.Group = "" }, "AGGREGATE_GROUP: must not be empty")
	f(func(c *Config) { c.MaxPending = 0 }, "MaxPending: must be >= 1")
	f(func(c *Config) { c.DLQTopic = c.Topic }, "DLQ_TOPIC: must differ from EVENTS_TOPIC")
}

package rollup

import (
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestConfigKeepsZeros: New honours a zero SETTLE_AFTER (final records as
// soon as the month ends) and rejects what cannot work, by name.
func TestConfigKeepsZeros(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers, cfg.SettleAfter = []string{"127.0.0.1:9"}, 0
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	oct := schemas.Month{Year: 2026, Month: time.October}
	end := oct.End(r.cfg.Location)
	if r.cfg.SettleAfter != 0 || !r.settled(oct, end) || r.settled(oct, end.Add(-time.Nanosecond)) {
		t.Fatalf("SETTLE_AFTER=0 not honoured; got %s", r.cfg.SettleAfter)
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
	f(func(c *Config) { c.CorrectionMonths = 0 }, "CorrectionMonths: must be >= 1")
	f(func(c *Config) { c.Interval = 0 }, "ROLLUP_INTERVAL: must be > 0")
	f(func(c *Config) { c.SettleAfter = 56 * 24 * time.Hour }, "SETTLE_AFTER: must be shorter than 56 days")
	f(func(c *Config) { c.Topic = "" }, "BILLING_TOPIC: must not be empty")
}

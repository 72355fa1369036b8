// Package e2ebench runs the end-to-end benchmark on the real services: load
// into Kafka, `immeter aggregate` as a child process into ClickHouse; it
// measures throughput, latency, the aggregator's memory and the month close,
// and compares storage and month-close queries with storing raw events.
package e2ebench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

// Config configures a run. Zero fields take the defaults of DefaultConfig.
type Config struct {
	Brokers     []string                 // Kafka bootstrap brokers; required
	ClickHouse  schemas.ClickHouseConfig // Addr and credentials; the database is a private one
	Binary      string                   // the immeter binary run as `immeter aggregate` (and `simulate`); required
	Partitions  int                      // partitions of the private events topic; default 4
	Replication int                      // replication factor of the private topics; default 1
	Dir         string                   // where child logs go; default a temporary directory

	Apps int // apps in the load; default 100000
	// Users is the number of distinct users (who log in: the MAU) of the
	// load and of the synthetic month. Default 2M; the memory target's
	// 10M needs a Preload of about 30M.
	Users int

	// Preload is how many events are in the topic before the aggregator
	// starts: their drain rate is the aggregator's throughput, and they
	// carry up to 0.35 x Preload of the Users (every login in them is a
	// new user while the app's share lasts). Default 6M.
	Preload int64
	// Rate and Sustain: the load offered while the aggregator runs, and
	// for how long. Defaults 300000/s and 60s (the target's 5 minutes with
	// Sustain 5m).
	Rate    float64
	Sustain time.Duration
	// Simulate makes `immeter simulate` (the ingest producer library) offer
	// the sustained load instead of the in-process generator.
	Simulate bool
	// Latency is how long the latency phase runs at Rate/2, with a probe
	// event every ProbeEvery. Defaults 30s and 100ms.
	Latency    time.Duration
	ProbeEvery time.Duration
	// Skip names phases not to run: "sustain", "latency", "peer", "close",
	// "month", and "alerts" (the alert probes of the latency phase).
	Skip map[string]bool
	// AggregateEnv is added to the environment of `immeter aggregate`, e.g.
	// GOMEMLIMIT=256MiB.
	AggregateEnv []string
	// AlertInterval is the alerter's ALERT_INTERVAL; 0: its default.
	AlertInterval time.Duration
	// Keep leaves the private database and topics in place.
	Keep bool

	// Months, when above 0, runs the storage phase instead of the others
	// (retention.go): Months of EventsPerDay events a day (default 20000),
	// an aggregator whose clock moves with them and accepts MaxEventAge
	// (default 62 days), then raw events against immeter's tables.
	Months       int
	EventsPerDay int
	MaxEventAge  time.Duration

	Out    io.Writer    // the report; default os.Stdout
	Logger *slog.Logger // progress; default slog.Default()
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:   4,
		Replication:  1,
		Apps:         100000,
		Users:        2_000_000,
		Preload:      6_000_000,
		Rate:         300000,
		Sustain:      60 * time.Second,
		Latency:      30 * time.Second,
		ProbeEvery:   100 * time.Millisecond,
		EventsPerDay: 20000,
		MaxEventAge:  aggregate.DefaultConfig().MaxPast,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.Replication == 0 {
		c.Replication = d.Replication
	}
	if c.Apps == 0 {
		c.Apps = d.Apps
	}
	if c.Users == 0 {
		c.Users = d.Users
	}
	if c.Preload == 0 {
		c.Preload = d.Preload
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Sustain == 0 {
		c.Sustain = d.Sustain
	}
	if c.Latency == 0 {
		c.Latency = d.Latency
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = d.ProbeEvery
	}
	if c.EventsPerDay == 0 {
		c.EventsPerDay = d.EventsPerDay
	}
	if c.MaxEventAge == 0 {
		c.MaxEventAge = d.MaxEventAge
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: required")
	case c.Binary == "":
		return errors.New("e2ebench: Binary: required")
	case c.Partitions < 1 || c.Apps < 1 || c.Users < c.Apps || c.Preload < 0:
		return errors.New("e2ebench: Partitions, Apps must be >= 1, Users >= Apps, Preload >= 0")
	case !(c.Rate > 0) || c.Sustain < 0 || c.Latency < 0 || c.ProbeEvery <= 0:
		return errors.New("e2ebench: Rate, ProbeEvery must be > 0; Sustain, Latency >= 0")
	case c.Months < 0 || c.EventsPerDay < 1 || c.EventsPerDay > 86_400_000 || c.MaxEventAge <= 0:
		return errors.New("e2ebench: Months must be >= 0, EventsPerDay within 1…86400000, MaxEventAge > 0")
	}
	c.ClickHouse.Database = "bench"
	return c.ClickHouse.Validate()
}

// env is the private corner of the services a run uses.
type env struct {
	cfg                  Config
	events, dlq, billing string
	alerts               string
	group                string
	ch                   schemas.ClickHouseConfig
	conn                 driver.Conn
	dir                  string
	log                  *slog.Logger
}

// Run runs the benchmark and writes the report to cfg.Out.
func Run(ctx context.Context, cfg Config) error {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	sfx := hex.EncodeToString(b[:])
	e := &env{
		cfg:     cfg,
		events:  "bench.events." + sfx,
		dlq:     "bench.dlq." + sfx,
		billing: "bench.billing." + sfx,
		alerts:  "bench.alerts." + sfx,
		group:   "bench-" + sfx,
		ch:      cfg.ClickHouse,
		dir:     cfg.Dir,
		log:     cfg.Logger,
	}
	e.ch.Database = "bench_" + sfx
	if e.dir == "" {
		d, err := os.MkdirTemp("", "immeter-bench-")
		if err != nil {
			return err
		}
		e.dir = d
	}
	e.dir = filepath.Join(e.dir, sfx)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	if err := ingest.EnsureTopics(ctx, cfg.Brokers, cfg.Partitions, cfg.Replication, e.events, e.dlq, e.billing, e.alerts); err != nil {
		return err
	}
	conn, err := schemas.OpenClickHouse(ctx, e.ch)
	if err != nil {
		return err
	}
	e.conn = conn
	defer func() {
		if !cfg.Keep {
			drop := fmt.Sprintf(sqlDropDatabase, e.ch.Database)
			if e.ch.Cluster != "" {
				drop += " ON CLUSTER " + e.ch.Cluster
			}
			_ = conn.Exec(context.Background(), drop)
			c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...)}
			_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.events, e.dlq, e.billing, e.alerts}})
		} else {
			e.log.Info("bench: kept", "database", e.ch.Database, "topic", e.events)
		}
		conn.Close()
	}()
	if cfg.Months > 0 {
		f, err := e.storage(ctx)
		if f != nil {
			f.write(cfg.Out, cfg)
		}
		return err
	}
	r := &report{cfg: cfg, started: time.Now(), database: e.ch.Database, topic: e.events, logs: e.dir}
	err = e.run(ctx, r)
	r.write(cfg.Out)
	return err
}

func (e *env) run(ctx context.Context, r *report) error {
	cfg := e.cfg
	// 1. Preload, then the aggregator drains it: throughput and memory.
	e.log.Info("bench: preloading", "events", cfg.Preload, "apps", cfg.Apps, "users", cfg.Users)
	gen, err := newGenerator(cfg.Apps, cfg.Users, 1, 1)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := e.produce(ctx, gen, cfg.Preload, 0, time.Time{})
	if err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	r.preload = phaseFigures{events: n, elapsed: time.Since(start)}
	r.preloadUsers = gen.Distinct()
	e.log.Info("bench: preloaded", "events", n, "rate", rate(n, r.preload.elapsed))

	alertProbes := 0
	if !cfg.Skip["latency"] && !cfg.Skip["alerts"] && cfg.Latency > 0 {
		alertProbes = int(cfg.Latency / cfg.ProbeEvery)
		if err := e.prepareAlertProbes(ctx, alertProbes); err != nil {
			return err
		}
	}

	agg, err := e.startAggregate(ctx)
	if err != nil {
		return err
	}
	defer agg.stop()
	end, err := e.endOffsets(ctx)
	if err != nil {
		return err
	}
	d, err := e.waitAggregated(ctx, end, agg, 30*time.Minute)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	r.drain = d
	r.drainRSS = agg.rss()
	e.log.Info("bench: drained", "events", d.events, "rate", rate(d.events, d.elapsed), "rss_mib", r.drainRSS.peak>>20)
	if alertProbes > 0 {
		stopAlerter, err := e.startAlerter(ctx)
		if err != nil {
			return err
		}
		defer stopAlerter()
	}

	// 2. Sustained load at Rate while the aggregator runs.
	if !cfg.Skip["sustain"] && cfg.Sustain > 0 {
		e.log.Info("bench: sustained load", "rate", cfg.Rate, "for", cfg.Sustain, "simulate", cfg.Simulate)
		s, err := e.sustain(ctx, gen, agg, cfg.Rate, cfg.Sustain, 0)
		if err != nil {
			return fmt.Errorf("sustain: %w", err)
		}
		r.sustain = &s
	}
	// 3. Latency at half the rate, with probes.
	if !cfg.Skip["latency"] && cfg.Latency > 0 {
		e.log.Info("bench: latency", "rate", cfg.Rate/2, "for", cfg.Latency)
		var ap *alertProber
		probeCtx, stopProbes := context.WithCancel(ctx)
		if alertProbes > 0 {
			ap = e.startAlertProbes(probeCtx, alertProbes, cfg.ProbeEvery)
		}
		s, err := e.sustain(ctx, gen, agg, cfg.Rate/2, cfg.Latency, cfg.ProbeEvery)
		stopProbes()
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		r.latency = &s
		if ap != nil {
			r.alertLatencies, r.alertProbes = ap.wait()
		}
	}
	r.finalRSS = agg.rss()
	if err := agg.stop(); err != nil {
		e.log.Warn("bench: aggregator stop", "err", err)
	}
	r.finalRSS = agg.rss()

	// 4. The peers' design on the same stream, and the month close.
	if !cfg.Skip["peer"] {
		e.log.Info("bench: raw events (peers' design)")
		p, err := e.peer(ctx)
		if err != nil {
			return fmt.Errorf("peer comparison: %w", err)
		}
		r.peer = p
	}
	if !cfg.Skip["close"] {
		e.log.Info("bench: month close")
		c, err := e.monthClose(ctx)
		if err != nil {
			return fmt.Errorf("month close: %w", err)
		}
		r.close = c
	}
	// 5. The close of a whole month of Apps apps and Users users.
	if !cfg.Skip["month"] {
		e.log.Info("bench: synthetic month", "apps", cfg.Apps, "users", cfg.Users)
		m, err := e.syntheticMonth(ctx, cfg.Apps, cfg.Users)
		if err != nil {
			return fmt.Errorf("synthetic month: %w", err)
		}
		r.month = m
	}
	return nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/immeter/immeter/cmd/immeter/e2ebench"
)

func init() { commands["bench"] = runBench }

// runBench runs the end-to-end benchmark (e2ebench) on the real services:
// load into a private topic, `immeter aggregate` (this binary) into a
// private database, and the comparison with storing raw events.
func runBench(ctx context.Context, args []string) error {
	d := e2ebench.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	r := newSettings(fs)
	var c common
	c.register(r)
	cfg := d
	fs.IntVar(&cfg.Apps, "apps", d.Apps, "apps in the load")
	fs.IntVar(&cfg.Users, "users", d.Users, "distinct users (MAU) of the load and of the synthetic month")
	fs.Int64Var(&cfg.Preload, "preload", d.Preload, "events in the topic before the aggregator starts (drain rate, memory)")
	fs.Float64Var(&cfg.Rate, "rate", d.Rate, "events per second offered in the sustained phase; the latency phase offers half")
	fs.DurationVar(&cfg.Sustain, "sustain", d.Sustain, "length of the sustained phase (the target is 5m)")
	fs.DurationVar(&cfg.Latency, "latency", d.Latency, "length of the latency phase")
	fs.DurationVar(&cfg.ProbeEvery, "probe-every", d.ProbeEvery, "interval of the latency probes")
	fs.BoolVar(&cfg.Simulate, "simulate", false, "offer the load with `immeter simulate` instead of the in-process generator")
	skip := fs.String("skip", "", "phases to skip, comma-separated: sustain, latency, peer, close, month, alerts")
	aggEnv := fs.String("aggregate-env", "GOMEMLIMIT=256MiB", "environment of the aggregator, comma-separated; the default is docker-compose.yml's")
	fs.DurationVar(&cfg.AlertInterval, "alert-interval", 0, "the alerter's ALERT_INTERVAL in the alerts phase (0: its default)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the private database and topics")
	fs.IntVar(&cfg.Months, "months", 0, "run only the storage phase: this many months of traffic with the aggregator's clock moving, then raw events against immeter's storage")
	fs.IntVar(&cfg.EventsPerDay, "events-per-day", d.EventsPerDay, "events a day in the storage phase (--months)")
	fs.DurationVar(&cfg.MaxEventAge, "max-event-age", d.MaxEventAge, "the aggregator's MAX_EVENT_AGE in the storage phase (--months)")
	r.str(&cfg.Dir, "IMMETER_RUN_DIR", false, "where the child processes' logs go")
	if err := r.parse(args); err != nil {
		return err
	}
	c.ch.Database = "bench" // a private one is made per run
	if err := c.validate(true, true); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find own binary: %w", err)
	}
	cfg.Brokers, cfg.ClickHouse, cfg.Binary, cfg.Partitions = brokers(c.kafka), c.ch, bin, c.partitions
	cfg.Replication = c.replication
	for _, kv := range strings.Split(*aggEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			if !strings.Contains(kv, "=") {
				return fmt.Errorf("--aggregate-env: %q: want NAME=value", kv)
			}
			cfg.AggregateEnv = append(cfg.AggregateEnv, kv)
		}
	}
	cfg.Skip = map[string]bool{}
	for _, s := range strings.Split(*skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Skip[s] = true
		}
	}
	start := time.Now()
	err = e2ebench.Run(ctx, cfg)
	fmt.Printf("bench: %s\n", time.Since(start).Round(time.Second))
	return err
}

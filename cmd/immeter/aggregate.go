package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
)

func init() {
	commands["aggregate"] = runAggregate
	commands["migrate"] = runMigrate
}

// aggregateFlags registers the aggregator's settings into cfg, which holds
// the defaults.
func aggregateFlags(r *settings, cfg *aggregate.Config) {
	r.str(&cfg.Group, "AGGREGATE_GROUP", true, "consumer group id")
	r.duration(&cfg.FlushInterval, "FLUSH_INTERVAL", positiveDuration, "time between the starts of two flushes")
	r.duration(&cfg.MaxPast, "MAX_EVENT_AGE", positiveDuration, "oldest accepted event, before now; also how long ids are remembered")
	r.float(&cfg.DedupFilterBits, "DEDUP_FILTER_BITS", "bits per id of the Bloom filters of ids already in event_ids (at most 64; 16 is typical); unset: an exact table, ~20 B per id")
	r.duration(&cfg.MaxFuture, "MAX_EVENT_FUTURE", anyDuration, "latest accepted event, after now; 0 accepts none dated after now")
	r.duration(&cfg.SessionTimeout, "AGGREGATE_SESSION_TIMEOUT", aggregate.MinSessionTimeout, "how long the group waits for a dead member")
	r.duration(&cfg.StuckRecheck, "AGGREGATE_STUCK_RECHECK", positiveDuration, "how often a stuck partition is checked for an accepted gap")
}

// aggregateOptions is what `immeter aggregate` runs with.
type aggregateOptions struct {
	common
	cfg aggregate.Config
	ops opsSettings
}

// parseAggregate reads the settings of `immeter aggregate`.
func parseAggregate(args []string) (*aggregateOptions, error) {
	fs := flag.NewFlagSet("aggregate", flag.ContinueOnError)
	r := newSettings(fs)
	o := &aggregateOptions{cfg: aggregate.DefaultConfig()}
	o.register(r)
	aggregateFlags(r, &o.cfg)
	o.ops.register(r)
	if err := r.parse(args); err != nil {
		return nil, err
	}
	if err := o.validate(true, true); err != nil {
		return nil, err
	}
	o.cfg = aggregateConfig(&o.common, o.cfg)
	return o, o.cfg.Validate()
}

// aggregateConfig completes cfg with the shared settings.
func aggregateConfig(c *common, cfg aggregate.Config) aggregate.Config {
	cfg.Brokers = brokers(c.kafka)
	cfg.Topic, cfg.DLQTopic, cfg.Location = c.events, c.dlq, c.loc
	return cfg
}

func runAggregate(ctx context.Context, args []string) error {
	o, err := parseAggregate(args)
	if err != nil {
		return err
	}
	a, err := newAggregator(ctx, &o.common, o.cfg)
	if err != nil {
		return err
	}
	stopOps, err := o.ops.serve([]prometheus.Collector{a.Collector()}, a.Checks(o.ops.failAfter)...)
	if err != nil {
		return err
	}
	defer stopOps()
	return a.Run(ctx)
}

// newAggregator creates the topics and returns an aggregator for cfg, which
// aggregateConfig completed.
func newAggregator(ctx context.Context, c *common, cfg aggregate.Config) (*aggregate.Aggregator, error) {
	cfg.Security = c.sec.kafka
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, cfg.Brokers, c.partitions, c.replication, c.events, c.dlq); err != nil {
		return nil, err
	}
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return nil, err
	}
	return aggregate.New(cfg, conn)
}

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	r := newSettings(fs)
	var c common
	c.register(r)
	if err := r.parse(args); err != nil {
		return err
	}
	if err := c.validate(false, true); err != nil {
		return err
	}
	conn, err := c.clickhouse(ctx) // applies the migrations
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Printf("migrations applied to %s/%s\n", c.ch.Addr, c.ch.Database)
	return nil
}

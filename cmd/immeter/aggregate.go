package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
)

func init() {
	commands["aggregate"] = runAggregate
	commands["migrate"] = runMigrate
}

func aggregateFlags(fs *flag.FlagSet, cfg *aggregate.Config) {
	d := aggregate.DefaultConfig()
	fs.StringVar(&cfg.Group, "group", env("AGGREGATE_GROUP", d.Group), "consumer group id (AGGREGATE_GROUP)")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", envDuration("FLUSH_INTERVAL", d.FlushInterval), "longest wait before folded events are written (FLUSH_INTERVAL)")
	fs.DurationVar(&cfg.MaxPast, "max-past", envDuration("MAX_EVENT_AGE", d.MaxPast), "oldest accepted event, before now (MAX_EVENT_AGE)")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", envDuration("AGGREGATE_SESSION_TIMEOUT", d.SessionTimeout), "consumer group session timeout (AGGREGATE_SESSION_TIMEOUT)")
	fs.DurationVar(&cfg.MaxFuture, "max-future", envDuration("MAX_EVENT_FUTURE", d.MaxFuture), "latest accepted event, after now (MAX_EVENT_FUTURE)")
}

func runAggregate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("aggregate", flag.ContinueOnError)
	var c common
	c.register(fs)
	var cfg aggregate.Config
	aggregateFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(true, true); err != nil {
		return err
	}
	a, err := newAggregator(ctx, &c, cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func newAggregator(ctx context.Context, c *common, cfg aggregate.Config) (*aggregate.Aggregator, error) {
	if cfg.FlushInterval < 0 || cfg.MaxPast < 0 || cfg.MaxFuture < 0 {
		return nil, fmt.Errorf("FLUSH_INTERVAL, MAX_EVENT_AGE, MAX_EVENT_FUTURE: want durations like 1s or 1488h")
	}
	cfg.Brokers, cfg.Security = brokers(c.kafka), c.sec.kafka
	cfg.Topic, cfg.DLQTopic, cfg.Location = c.events, c.dlq, c.loc
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, cfg.Brokers, c.partitions, 1, c.events, c.dlq); err != nil {
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
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
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

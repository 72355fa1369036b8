package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/immeter/immeter/aggregate"
)

func init() {
	commands["accept-gap"] = runAcceptGap
}

const acceptGapUsage = `usage: immeter accept-gap --partition N --reason TEXT [--by NAME] [flags]

A partition of the events topic the aggregator cannot read without skipping
events (deleted by retention before they were aggregated, a recreated or
truncated topic, or a position ClickHouse lost) is held stuck: its events are
not counted, and the aggregator logs it at level error. accept-gap records
the offset range that cannot be aggregated in the ClickHouse table
offset_gaps (topic, partition, kind, offsets, who, when, why), then moves the
partition's stored position past it; the aggregator goes on within
AGGREGATE_STUCK_RECHECK. It refuses a partition that is not stuck.

Flags:
`

func runAcceptGap(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("accept-gap", flag.ContinueOnError)
	r := newSettings(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), acceptGapUsage)
		r.printDefaults()
	}
	var c common
	c.register(r)
	cfg := aggregate.GapConfig{Partition: -1, Group: aggregate.DefaultConfig().Group, By: os.Getenv("USER")}
	r.str(&cfg.Group, "AGGREGATE_GROUP", true, "the aggregators' consumer group id")
	fs.IntVar(&cfg.Partition, "partition", -1, "the stuck partition of the events topic (required)")
	fs.StringVar(&cfg.Reason, "reason", "", "why skipping is right, e.g. an incident or ticket (required)")
	fs.StringVar(&cfg.By, "by", cfg.By, "who decides (default $USER)")
	if err := r.parse(args); err != nil {
		return err
	}
	if err := c.validate(true, true); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.Brokers, cfg.Security, cfg.Topic = brokers(c.kafka), c.sec.kafka, c.events
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	g, err := aggregate.AcceptGap(ctx, conn, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "recorded gap in offset_gaps: topic %s partition %d kind %s from %d to %d (topic id %s -> %s); position %d -> %d; by %s at %s: %s\n",
		cfg.Topic, g.Partition, g.Kind, g.From, g.To, g.OldTopicID, g.NewTopicID, g.PositionBefore, g.PositionAfter,
		g.AcceptedBy, g.AcceptedAt.Format("2006-01-02T15:04:05Z"), g.Reason)
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/simulate"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["simulate"] = runSimulate }

// simulateOptions is what `immeter simulate` runs with.
type simulateOptions struct {
	brokers     []string
	topic       string
	partitions  int
	replication int
	cfg         simulate.TrafficConfig
	sec         security
}

// parseSimulate reads the settings of `immeter simulate`.
func parseSimulate(args []string) (*simulateOptions, error) {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	r := newSettings(fs)
	o := &simulateOptions{topic: schemas.EventsTopic, partitions: 4, replication: 1, cfg: simulate.DefaultTrafficConfig()}
	var brokerList string
	seeded := false
	r.str(&brokerList, "KAFKA_BROKERS", true, "Kafka brokers, comma-separated (required)")
	r.str(&o.topic, "EVENTS_TOPIC", true, "events topic")
	integer(r, &o.partitions, "KAFKA_PARTITIONS", 1, "partitions of a topic this command creates")
	integer(r, &o.replication, "KAFKA_REPLICATION", 1, "replication factor of a topic this command creates")
	integer(r, &o.cfg.Apps, "SIM_APPS", 1, "number of apps")
	r.add(&setting{env: "SIM_FIRST_APP", def: strconv.FormatUint(uint64(o.cfg.FirstApp), 10), parse: func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("want an app id from 1 to %d", uint64(schemas.MaxAppID))
		}
		o.cfg.FirstApp = uint32(n)
		return nil
	}}, "first app id")
	integer(r, &o.cfg.UsersPerApp, "SIM_USERS", 1, "users per app")
	r.float(&o.cfg.Rate, "SIM_RATE", "events per second")
	r.duration(&o.cfg.Duration, "SIM_DURATION", anyDuration, "how long to run; 0 until interrupted")
	integer(r, &o.cfg.Events, "SIM_EVENTS", 0, "stop after this many events; 0 no limit")
	r.add(&setting{env: "SIM_SEED", parse: func(v string) error {
		if v == "" {
			return nil // from the clock
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("want an unsigned integer")
		}
		o.cfg.Seed, seeded = n, true
		return nil
	}}, "seed; the same seed publishes the same events; default from the clock")
	o.sec.register(r)
	if err := r.parse(args); err != nil {
		return nil, err
	}
	if err := o.sec.load(nil); err != nil {
		return nil, err
	}
	if o.brokers = brokers(brokerList); len(o.brokers) == 0 {
		return nil, errors.New("KAFKA_BROKERS: required")
	}
	if !seeded {
		o.cfg.Seed = uint64(time.Now().UnixNano())
	}
	if last := uint64(o.cfg.FirstApp) + uint64(o.cfg.Apps) - 1; last > schemas.MaxAppID {
		return nil, fmt.Errorf("SIM_FIRST_APP: %d with SIM_APPS %d passes the largest app id %d", o.cfg.FirstApp, o.cfg.Apps, uint64(schemas.MaxAppID))
	}
	return o, o.cfg.Validate()
}

// runSimulate publishes simulated IM traffic to Kafka with the producer library.
func runSimulate(ctx context.Context, args []string) error {
	o, err := parseSimulate(args)
	if err != nil {
		return err
	}
	cfg := o.cfg
	if err := prepareTopics(ctx, o.sec.kafka, o.brokers, o.partitions, o.replication, o.topic); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = o.brokers, o.topic, true, o.sec.kafka
	// Throughput over latency: larger batches, and a buffer of about a
	// quarter second of traffic, so a slow acknowledgement does not hold
	// the generator back.
	pcfg.Linger, pcfg.BatchSize = 10*time.Millisecond, 2000
	pcfg.BufferSize = int(min(max(cfg.Rate/4, 10000), 100000))
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	slog.Info("simulate: publishing", "topic", o.topic, "apps", cfg.Apps, "users_per_app", cfg.UsersPerApp,
		"rate", cfg.Rate, "duration", cfg.Duration, "events", cfg.Events, "seed", cfg.Seed)
	st, simErr := simulate.Traffic(ctx, cfg, p.Publish)
	closeErr := flushProducer(p)
	slog.Info("simulate: done", "events", st.Events, "elapsed", st.Elapsed.Round(time.Millisecond),
		"logins", st.ByType[schemas.Login], "messages", st.ByType[schemas.Message], "groups", st.ByType[schemas.Group],
		"calls", st.ByType[schemas.Call], "plans", st.ByType[schemas.Plan])
	return errors.Join(simErr, closeErr)
}

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

// runSimulate publishes simulated IM traffic to Kafka with the producer library.
func runSimulate(ctx context.Context, args []string) error {
	d := simulate.DefaultTrafficConfig()
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	r := newSettings(fs)
	cfg := d
	var brokerList, seed string
	topic, nParts, nRepl := schemas.EventsTopic, 4, 1
	firstApp := int64(d.FirstApp)
	r.str(&brokerList, "KAFKA_BROKERS", true, "Kafka brokers, comma-separated (required)")
	r.str(&topic, "EVENTS_TOPIC", true, "events topic")
	integer(r, &nParts, "KAFKA_PARTITIONS", 1, "partitions of a topic this command creates")
	integer(r, &nRepl, "KAFKA_REPLICATION", 1, "replication factor of a topic this command creates")
	integer(r, &cfg.Apps, "SIM_APPS", 1, "number of apps")
	integer(r, &firstApp, "SIM_FIRST_APP", 1, "first app id")
	integer(r, &cfg.UsersPerApp, "SIM_USERS", 1, "users per app")
	r.float(&cfg.Rate, "SIM_RATE", "events per second")
	r.duration(&cfg.Duration, "SIM_DURATION", anyDuration, "how long to run; 0 until interrupted")
	integer(r, &cfg.Events, "SIM_EVENTS", 0, "stop after this many events; 0 no limit")
	r.str(&seed, "SIM_SEED", false, "seed; the same seed publishes the same events; default from the clock")
	var sec security
	sec.register(r)
	if err := r.parse(args); err != nil {
		return err
	}
	if err := sec.load(nil); err != nil {
		return err
	}
	bs := brokers(brokerList)
	if len(bs) == 0 {
		return errors.New("KAFKA_BROKERS: required")
	}
	if firstApp > schemas.MaxAppID {
		return fmt.Errorf("SIM_FIRST_APP: must be an app id <= %d; got %d", uint64(schemas.MaxAppID), firstApp)
	}
	cfg.FirstApp = uint32(firstApp)
	if seed == "" {
		cfg.Seed = uint64(time.Now().UnixNano())
	} else if n, err := strconv.ParseUint(seed, 10, 64); err == nil {
		cfg.Seed = n
	} else {
		return fmt.Errorf("SIM_SEED: %q: want an unsigned integer", seed)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := sec.load(nil); err != nil {
		return err
	}

	if err := prepareTopics(ctx, sec.kafka, bs, nParts, nRepl, topic); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = bs, topic, true, sec.kafka
	// Throughput over latency: larger batches, and a buffer of about a
	// quarter second of traffic, so a slow acknowledgement does not hold
	// the generator back.
	pcfg.Linger, pcfg.BatchSize = 10*time.Millisecond, 2000
	pcfg.BufferSize = int(min(max(cfg.Rate/4, 10000), 100000))
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	slog.Info("simulate: publishing", "topic", topic, "apps", cfg.Apps, "users_per_app", cfg.UsersPerApp,
		"rate", cfg.Rate, "duration", cfg.Duration, "events", cfg.Events, "seed", cfg.Seed)
	st, simErr := simulate.Traffic(ctx, cfg, p.Publish)
	closeErr := flushProducer(p)
	slog.Info("simulate: done", "events", st.Events, "elapsed", st.Elapsed.Round(time.Millisecond),
		"logins", st.ByType[schemas.Login], "messages", st.ByType[schemas.Message], "groups", st.ByType[schemas.Group],
		"calls", st.ByType[schemas.Call], "plans", st.ByType[schemas.Plan])
	return errors.Join(simErr, closeErr)
}

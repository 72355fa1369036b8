package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"strconv"
	"time"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["simulate"] = runSimulate }

// runSimulate publishes simulated IM traffic to Kafka with the producer library.
func runSimulate(ctx context.Context, args []string) error {
	d := ingest.DefaultSimulateConfig()
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	var (
		brokerList  = fs.String("brokers", env("KAFKA_BROKERS", ""), "Kafka brokers, comma-separated (KAFKA_BROKERS, required)")
		topic       = fs.String("topic", env("EVENTS_TOPIC", schemas.EventsTopic), "events topic (EVENTS_TOPIC)")
		partitions  = fs.String("partitions", env("KAFKA_PARTITIONS", "4"), "partitions of a topic this command creates (KAFKA_PARTITIONS)")
		replication = fs.String("replication", env("KAFKA_REPLICATION", "1"), "replication factor of a topic this command creates (KAFKA_REPLICATION)")
		apps        = fs.String("apps", env("SIM_APPS", strconv.Itoa(d.Apps)), "number of apps (SIM_APPS)")
		firstApp    = fs.String("first-app", env("SIM_FIRST_APP", strconv.FormatUint(uint64(d.FirstApp), 10)), "first app id (SIM_FIRST_APP)")
		users       = fs.String("users", env("SIM_USERS", strconv.Itoa(d.UsersPerApp)), "users per app (SIM_USERS)")
		rate        = fs.String("rate", env("SIM_RATE", strconv.FormatFloat(d.Rate, 'g', -1, 64)), "events per second (SIM_RATE)")
		duration    = fs.String("duration", env("SIM_DURATION", "0s"), "how long to run; 0 until interrupted (SIM_DURATION)")
		events      = fs.String("events", env("SIM_EVENTS", "0"), "stop after this many events; 0 no limit (SIM_EVENTS)")
		seed        = fs.String("seed", env("SIM_SEED", ""), "seed; the same seed publishes the same events; default from the clock (SIM_SEED)")
	)
	var sec security
	sec.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	bs := brokers(*brokerList)
	if len(bs) == 0 {
		return errors.New("KAFKA_BROKERS: required")
	}
	var s settingParser
	cfg := d
	cfg.Apps = s.int("SIM_APPS", *apps, 1)
	if n := s.int("SIM_FIRST_APP", *firstApp, 1); n <= schemas.MaxAppID {
		cfg.FirstApp = uint32(n)
	} else {
		s.fail("SIM_FIRST_APP", "must be an app id <= %d; got %d", uint64(schemas.MaxAppID), n)
	}
	cfg.UsersPerApp = s.int("SIM_USERS", *users, 1)
	cfg.Rate = s.float("SIM_RATE", *rate)
	cfg.Duration = s.duration("SIM_DURATION", *duration)
	cfg.Events = int64(s.int("SIM_EVENTS", *events, 0))
	if *seed == "" {
		cfg.Seed = uint64(time.Now().UnixNano())
	} else if n, err := strconv.ParseUint(*seed, 10, 64); err == nil {
		cfg.Seed = n
	} else {
		s.fail("SIM_SEED", "must be an unsigned integer; got %q", *seed)
	}
	nParts := s.int("KAFKA_PARTITIONS", *partitions, 1)
	nRepl := s.int("KAFKA_REPLICATION", *replication, 1)
	if s.err != nil {
		return s.err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := sec.load(nil); err != nil {
		return err
	}

	if err := prepareTopics(ctx, sec.kafka, bs, nParts, nRepl, *topic); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = bs, *topic, true, sec.kafka
	// Throughput over latency: larger batches, and a buffer of about a
	// quarter second of traffic, so a slow acknowledgement does not hold
	// the generator back.
	pcfg.Linger, pcfg.BatchSize = 10*time.Millisecond, 2000
	pcfg.BufferSize = int(min(max(cfg.Rate/4, 10000), 100000))
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	slog.Info("simulate: publishing", "topic", *topic, "apps", cfg.Apps, "users_per_app", cfg.UsersPerApp,
		"rate", cfg.Rate, "duration", cfg.Duration, "events", cfg.Events, "seed", cfg.Seed)
	st, simErr := ingest.Simulate(ctx, cfg, p.Publish)
	closeErr := flushProducer(p)
	slog.Info("simulate: done", "events", st.Events, "elapsed", st.Elapsed.Round(time.Millisecond),
		"logins", st.ByType[schemas.Login], "messages", st.ByType[schemas.Message], "groups", st.ByType[schemas.Group],
		"calls", st.ByType[schemas.Call], "plans", st.ByType[schemas.Plan])
	return errors.Join(simErr, closeErr)
}

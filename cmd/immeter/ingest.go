package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["ingest"] = runIngest }

// runIngest serves the HTTP gateway (POST /v1/events) until ctx ends.
func runIngest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	var (
		brokerList  = fs.String("brokers", env("KAFKA_BROKERS", ""), "Kafka brokers, comma-separated (KAFKA_BROKERS, required)")
		topic       = fs.String("topic", env("EVENTS_TOPIC", schemas.EventsTopic), "events topic (EVENTS_TOPIC)")
		partitions  = fs.String("partitions", env("KAFKA_PARTITIONS", "4"), "partitions of a topic this command creates (KAFKA_PARTITIONS)")
		replication = fs.String("replication", env("KAFKA_REPLICATION", "1"), "replication factor of a topic this command creates (KAFKA_REPLICATION)")
		addr        = fs.String("addr", env("INGEST_ADDR", ":8080"), "listen address (INGEST_ADDR)")
		secrets     = fs.String("secrets", env("IMMETER_SECRETS_FILE", ""), "file of app=secret lines (IMMETER_SECRETS_FILE, required)")
		maxBody     = fs.String("max-body-bytes", env("INGEST_MAX_BODY_BYTES", "4194304"), "largest request body (INGEST_MAX_BODY_BYTES)")
		maxEvent    = fs.String("max-event-bytes", env("INGEST_MAX_EVENT_BYTES", "16384"), "largest event in a body (INGEST_MAX_EVENT_BYTES)")
		skew        = fs.String("max-clock-skew", env("INGEST_MAX_CLOCK_SKEW", "5m"), "accepted X-Immeter-Timestamp distance from now (INGEST_MAX_CLOCK_SKEW)")
		pubTimeout  = fs.String("publish-timeout", env("INGEST_PUBLISH_TIMEOUT", "10s"), "wait for Kafka before answering 503 (INGEST_PUBLISH_TIMEOUT)")
		maxConns    = fs.String("max-connections", env("INGEST_MAX_CONNECTIONS", "256"), "open connections at most; more wait (INGEST_MAX_CONNECTIONS)")
		maxRequests = fs.String("max-requests", env("INGEST_MAX_REQUESTS", "4"), "requests read and handled at once; more wait (INGEST_MAX_REQUESTS)")
		appRate     = fs.String("app-rate", env("INGEST_APP_RATE", "20000"), "events a second an app may average; over it, 429 (INGEST_APP_RATE)")
		appBurst    = fs.String("app-burst", env("INGEST_APP_BURST", "100000"), "events an app may send at once above its rate (INGEST_APP_BURST)")
		replayCache = fs.String("replay-cache", env("INGEST_REPLAY_CACHE", "1000000"), "signatures remembered to refuse replays (INGEST_REPLAY_CACHE)")
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
	if *secrets == "" {
		return errors.New("IMMETER_SECRETS_FILE: required")
	}
	var s settingParser
	gcfg := ingest.DefaultGatewayConfig()
	gcfg.Addr = *addr
	gcfg.MaxBodyBytes = int64(s.int("INGEST_MAX_BODY_BYTES", *maxBody, 1))
	gcfg.MaxEventBytes = s.int("INGEST_MAX_EVENT_BYTES", *maxEvent, 1)
	gcfg.MaxClockSkew = s.duration("INGEST_MAX_CLOCK_SKEW", *skew)
	gcfg.PublishTimeout = s.duration("INGEST_PUBLISH_TIMEOUT", *pubTimeout)
	gcfg.WriteTimeout = max(gcfg.WriteTimeout, gcfg.PublishTimeout+5*time.Second)
	gcfg.MaxConnections = s.int("INGEST_MAX_CONNECTIONS", *maxConns, 1)
	gcfg.MaxRequests = s.int("INGEST_MAX_REQUESTS", *maxRequests, 1)
	if gcfg.AppRate = s.float("INGEST_APP_RATE", *appRate); math.IsInf(gcfg.AppRate, 0) {
		s.fail("INGEST_APP_RATE", "must be a finite number > 0; got %q", *appRate)
	}
	gcfg.AppBurst = s.int("INGEST_APP_BURST", *appBurst, 1)
	gcfg.ReplayCacheSize = s.int("INGEST_REPLAY_CACHE", *replayCache, 1)
	if s.err == nil && gcfg.MaxConnections < gcfg.MaxRequests {
		s.fail("INGEST_MAX_CONNECTIONS", "must be >= INGEST_MAX_REQUESTS (%d); got %d", gcfg.MaxRequests, gcfg.MaxConnections)
	}
	nParts := s.int("KAFKA_PARTITIONS", *partitions, 1)
	nRepl := s.int("KAFKA_REPLICATION", *replication, 1)
	if s.err != nil {
		return s.err
	}
	if err := sec.load(nil); err != nil {
		return err
	}
	var err error
	if gcfg.Secrets, err = ingest.LoadSecrets(*secrets); err != nil {
		return fmt.Errorf("IMMETER_SECRETS_FILE: %w", err)
	}

	if err := prepareTopics(ctx, sec.kafka, bs, nParts, nRepl, *topic); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Security = bs, *topic, sec.kafka
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	g, err := ingest.NewGateway(gcfg, p)
	if err != nil {
		p.Close(ctx)
		return err
	}
	serveErr := g.ListenAndServe(ctx)
	if err := flushProducer(p); err != nil {
		return errors.Join(serveErr, err)
	}
	return serveErr
}

// prepareTopics creates missing topics, giving the broker a minute.
func prepareTopics(ctx context.Context, sec schemas.KafkaSecurity, bs []string, partitions, replication int, topics ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return ingest.EnsureTopicsWith(ctx, sec, bs, partitions, replication, topics...)
}

// flushProducer flushes p, giving Kafka 30 s after the command was told to stop.
func flushProducer(p *ingest.Producer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Close(ctx)
	st := p.Stats()
	slog.Info("ingest: producer closed", "accepted", st.Accepted, "delivered", st.Delivered, "failed", st.Failed)
	return err
}

// settingParser parses setting values, keeping the first error, which names the
// environment variable (the flag of the same meaning is in the help).
type settingParser struct{ err error }

func (s *settingParser) fail(name, format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
}

func (s *settingParser) int(name, v string, min int) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		s.fail(name, "must be an integer >= %d; got %q", min, v)
	}
	return n
}

func (s *settingParser) float(name, v string) float64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) {
		s.fail(name, "must be a number > 0; got %q", v)
	}
	return f
}

func (s *settingParser) duration(name, v string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.fail(name, "must be a duration like 90s or 5m; got %q", v)
	}
	return d
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["ingest"] = runIngest }

// gatewayFlags registers the gateway's limits into cfg, which holds the
// defaults.
func gatewayFlags(r *settings, cfg *ingest.GatewayConfig) {
	integer(r, &cfg.MaxBodyBytes, "INGEST_MAX_BODY_BYTES", 1, "largest request body")
	integer(r, &cfg.MaxEventBytes, "INGEST_MAX_EVENT_BYTES", 1, "largest event in a body")
	r.duration(&cfg.MaxClockSkew, "INGEST_MAX_CLOCK_SKEW", positiveDuration, "accepted X-Immeter-Timestamp distance from now")
	r.duration(&cfg.PublishTimeout, "INGEST_PUBLISH_TIMEOUT", positiveDuration, "wait for Kafka before answering 503")
	integer(r, &cfg.MaxConnections, "INGEST_MAX_CONNECTIONS", 1, "open connections at most; more wait")
	integer(r, &cfg.MaxRequests, "INGEST_MAX_REQUESTS", 1, "requests read and handled at once; more wait")
	r.float(&cfg.AppRate, "INGEST_APP_RATE", "events a second an app may average; over it, 429")
	integer(r, &cfg.AppBurst, "INGEST_APP_BURST", 1, "events an app may send at once above its rate")
	integer(r, &cfg.ReplayCacheSize, "INGEST_REPLAY_CACHE", 1, "signatures remembered to refuse replays")
}

// gatewayConfig loads the secrets file into cfg and checks it.
func gatewayConfig(cfg ingest.GatewayConfig, secrets string) (ingest.GatewayConfig, error) {
	cfg.WriteTimeout = max(cfg.WriteTimeout, cfg.PublishTimeout+5*time.Second)
	if cfg.MaxConnections < cfg.MaxRequests {
		return cfg, fmt.Errorf("INGEST_MAX_CONNECTIONS: must be >= INGEST_MAX_REQUESTS (%d); got %d", cfg.MaxRequests, cfg.MaxConnections)
	}
	var err error
	if cfg.Secrets, err = ingest.LoadSecrets(secrets); err != nil {
		return cfg, fmt.Errorf("IMMETER_SECRETS_FILE: %w", err)
	}
	return cfg, cfg.Validate()
}

// ingestOptions is what `immeter ingest` runs with.
type ingestOptions struct {
	brokers     []string
	topic       string
	partitions  int
	replication int
	gw          ingest.GatewayConfig
	ops         opsSettings
	sec         security
}

// parseIngest reads the settings of `immeter ingest`.
func parseIngest(args []string) (*ingestOptions, error) {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	r := newSettings(fs)
	o := &ingestOptions{topic: schemas.EventsTopic, partitions: 4, replication: 1, gw: ingest.DefaultGatewayConfig()}
	var brokerList, secrets string
	r.str(&brokerList, "KAFKA_BROKERS", true, "Kafka brokers, comma-separated (required)")
	r.str(&o.topic, "EVENTS_TOPIC", true, "events topic")
	integer(r, &o.partitions, "KAFKA_PARTITIONS", 1, "partitions of a topic this command creates")
	integer(r, &o.replication, "KAFKA_REPLICATION", 1, "replication factor of a topic this command creates")
	r.str(&o.gw.Addr, "INGEST_ADDR", true, "listen address")
	r.str(&secrets, "IMMETER_SECRETS_FILE", true, "file of app=secret lines (required)")
	gatewayFlags(r, &o.gw)
	o.ops.register(r)
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
	if secrets == "" {
		return nil, errors.New("IMMETER_SECRETS_FILE: required")
	}
	var err error
	o.gw, err = gatewayConfig(o.gw, secrets)
	return o, err
}

// runIngest serves the HTTP gateway (POST /v1/events) until ctx ends.
func runIngest(ctx context.Context, args []string) error {
	o, err := parseIngest(args)
	if err != nil {
		return err
	}
	if err := prepareTopics(ctx, o.sec.kafka, o.brokers, o.partitions, o.replication, o.topic); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Security = o.brokers, o.topic, o.sec.kafka
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	g, err := ingest.NewGateway(o.gw, p)
	if err != nil {
		p.Close(ctx)
		return err
	}
	stopOps, err := o.ops.serve([]prometheus.Collector{g.Collector()}, g.Checks()...)
	if err != nil {
		p.Close(ctx)
		return err
	}
	defer stopOps()
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

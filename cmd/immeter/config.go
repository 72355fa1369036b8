package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/schemas"
)

// common holds the settings every command shares.
type common struct {
	kafka      string
	partitions int
	ch         schemas.ClickHouseConfig
	tz         string
	loc        *time.Location
	events     string
	dlq        string
	billing    string
	sec        security
}

// register adds the shared flags to fs, with defaults from the environment.
func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.kafka, "kafka", env("KAFKA_BROKERS", ""), "Kafka brokers, comma-separated (KAFKA_BROKERS)")
	fs.IntVar(&c.partitions, "partitions", envInt("KAFKA_PARTITIONS", 4), "partitions of topics immeter creates (KAFKA_PARTITIONS)")
	fs.StringVar(&c.ch.Addr, "clickhouse", env("CLICKHOUSE_ADDR", ""), "ClickHouse native protocol host:port (CLICKHOUSE_ADDR)")
	fs.StringVar(&c.ch.Database, "database", env("CLICKHOUSE_DATABASE", "immeter"), "ClickHouse database (CLICKHOUSE_DATABASE)")
	fs.StringVar(&c.ch.Username, "clickhouse-user", env("CLICKHOUSE_USER", "default"), "ClickHouse user (CLICKHOUSE_USER)")
	c.ch.Password = env("CLICKHOUSE_PASSWORD", "")
	c.sec.register(fs)
	registerClickHouseTLS(fs, &c.ch)
	fs.StringVar(&c.tz, "tz", env("BILLING_TZ", schemas.DefaultTimezone), "billing time zone: +08:00 or an IANA name (BILLING_TZ)")
	fs.StringVar(&c.events, "events-topic", env("EVENTS_TOPIC", schemas.EventsTopic), "usage events topic (EVENTS_TOPIC)")
	fs.StringVar(&c.dlq, "dlq-topic", env("DLQ_TOPIC", schemas.DLQTopic), "dead-letter topic (DLQ_TOPIC)")
	fs.StringVar(&c.billing, "billing-topic", env("BILLING_TOPIC", schemas.BillingTopic), "billing records topic (BILLING_TOPIC)")
}

// validate checks the shared settings; needKafka and needCH say which
// services the command uses.
func (c *common) validate(needKafka, needCH bool) error {
	if needKafka && len(brokers(c.kafka)) == 0 {
		return fmt.Errorf("KAFKA_BROKERS: required (e.g. 127.0.0.1:9092)")
	}
	if c.partitions < 1 {
		return fmt.Errorf("KAFKA_PARTITIONS: must be >= 1; got %d", c.partitions)
	}
	if err := c.sec.load(&c.ch); err != nil {
		return err
	}
	if needCH {
		if err := c.ch.Validate(); err != nil {
			return err
		}
	}
	loc, err := schemas.ParseTimezone(c.tz)
	if err != nil {
		return fmt.Errorf("BILLING_TZ: %w", err)
	}
	c.loc = loc
	for name, t := range map[string]string{"EVENTS_TOPIC": c.events, "DLQ_TOPIC": c.dlq, "BILLING_TOPIC": c.billing} {
		if t == "" {
			return fmt.Errorf("%s: must not be empty", name)
		}
	}
	if c.events == c.dlq {
		return fmt.Errorf("DLQ_TOPIC: must differ from EVENTS_TOPIC (%s)", c.events)
	}
	return nil
}

func (c *common) clickhouse(ctx context.Context) (driver.Conn, error) {
	return schemas.OpenClickHouse(ctx, c.ch)
}

func envInt(name string, def int) int {
	if v := env(name, ""); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		return -1 // reported by validate as the named setting
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := env(name, ""); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		return -1
	}
	return def
}

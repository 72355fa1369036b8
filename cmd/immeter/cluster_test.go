package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// TestClusterCommandsUseReplication: on the replicated setup (make
// test-cluster), `immeter rollup` and the aggregator of `immeter aggregate`
// and `run` create their topics with KAFKA_REPLICATION replicas (and
// min.insync.replicas 2), and the migrations make replicated tables.
func TestClusterCommandsUseReplication(t *testing.T) {
	brokerList, chAddr, cluster := testenv.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := testenv.NewNames()
	events, dlq, billing, db := n.Events, n.DLQ, n.Billing, n.Database
	args := []string{"--kafka-brokers", strings.Join(brokerList, ","), "--kafka-replication", "3", "--kafka-partitions", "2",
		"--clickhouse-addr", chAddr, "--clickhouse-cluster", cluster, "--clickhouse-database", db,
		"--events-topic", events, "--dlq-topic", dlq, "--billing-topic", billing}
	testenv.DeleteTopicsAtEnd(t, brokerList, events, dlq, billing)
	t.Cleanup(func() {
		conn, err := schemas.OpenClickHouse(context.Background(), schemas.ClickHouseConfig{Addr: chAddr, Database: db, Cluster: cluster})
		if err == nil {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cluster)
			conn.Close()
		}
	})

	// rollup: creates the billing topic, then publishes (nothing: no usage).
	if err := runRollup(ctx, append(args, "--month", "2026-10")); err != nil {
		t.Fatalf("immeter rollup: %v", err)
	}
	// aggregate and run: newAggregator creates the events and DLQ topics.
	o, err := parseAggregate(args)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newAggregator(ctx, &o.common, o.cfg); err != nil {
		t.Fatalf("newAggregator: %v", err)
	}

	cl := &kafka.Client{Addr: kafka.TCP(brokerList...)}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{events, dlq, billing}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		for _, p := range tp.Partitions {
			if len(p.Replicas) != 3 {
				t.Errorf("%s/%d: %d replicas; want 3 (KAFKA_REPLICATION)", tp.Name, p.ID, len(p.Replicas))
			}
		}
	}
	for _, topic := range []string{events, dlq, billing} {
		res, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
			{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"min.insync.replicas"}}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Resources {
			for _, ce := range r.ConfigEntries {
				if ce.ConfigValue != "2" {
					t.Errorf("%s: min.insync.replicas = %s; want 2", topic, ce.ConfigValue)
				}
			}
		}
	}

	for _, addr := range strings.Split(chAddr, ",") {
		conn, err := schemas.OpenClickHouse(ctx, schemas.ClickHouseConfig{Addr: addr, Database: db, Cluster: cluster})
		if err != nil {
			t.Fatalf("replica %s: %v", addr, err)
		}
		var n, replicated uint64
		err = conn.QueryRow(ctx, `SELECT count(), countIf(engine LIKE 'Replicated%') FROM system.tables
			WHERE database = ? AND engine != 'View'`, db).Scan(&n, &replicated)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n < 8 || replicated != n {
			t.Errorf("replica %s: %d of %d tables replicated; want all", addr, replicated, n)
		}
	}
}

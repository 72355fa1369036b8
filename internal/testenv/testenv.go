// Package testenv is the tests' harness for the real services: the gate that runs, skips or fails integration tests, private names, topics, databases and servers, and Kafka helpers; it imports no immeter package, so that every package's own tests can use it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Integration reports whether IMMETER_INTEGRATION=1 (make test sets it): the
// services must be configured, and tests that start servers of their own run.
func Integration() bool { return os.Getenv("IMMETER_INTEGRATION") == "1" }

// Configured returns the shared services the environment names, if any: the
// brokers of KAFKA_BROKERS and the ClickHouse address of CLICKHOUSE_ADDR.
func Configured() (brokers []string, chAddr string) {
	return SplitBrokers(os.Getenv("KAFKA_BROKERS")), os.Getenv("CLICKHOUSE_ADDR")
}

// Services returns the shared Kafka brokers and ClickHouse server, or skips
// the test when KAFKA_BROKERS or CLICKHOUSE_ADDR is unset; with
// IMMETER_INTEGRATION=1 it fails the test instead.
func Services(t testing.TB) (brokers []string, chAddr string) {
	t.Helper()
	brokers, chAddr = Configured()
	if len(brokers) == 0 || chAddr == "" {
		missing(t, "KAFKA_BROKERS or CLICKHOUSE_ADDR is unset", "set KAFKA_BROKERS and CLICKHOUSE_ADDR (make test starts both)")
	}
	return brokers, chAddr
}

// Kafka is Services for a test that needs the brokers only.
func Kafka(t testing.TB) []string {
	t.Helper()
	brokers, _ := Configured()
	if len(brokers) == 0 {
		missing(t, "KAFKA_BROKERS is unset", "set KAFKA_BROKERS (bash .ci/kafka.sh start runs a broker on 127.0.0.1:19092)")
	}
	return brokers
}

// ClickHouse is Services for a test that needs the ClickHouse server only.
func ClickHouse(t testing.TB) string {
	t.Helper()
	_, addr := Configured()
	if addr == "" {
		missing(t, "CLICKHOUSE_ADDR is unset", "set CLICKHOUSE_ADDR (bash .ci/clickhouse.sh start runs a server on 127.0.0.1:19000)")
	}
	return addr
}

func missing(t testing.TB, what, how string) {
	t.Helper()
	if Integration() {
		t.Fatal("IMMETER_INTEGRATION=1 but " + what)
	}
	t.Skip("integration test: " + how)
}

// Private skips the test unless IMMETER_INTEGRATION=1: for a test that
// starts servers of its own (StartKafka, StartClickHouse), which takes long.
func Private(t testing.TB) {
	t.Helper()
	if !Integration() {
		t.Skip("integration test: starts a private server; set IMMETER_INTEGRATION=1 (make test does)")
	}
}

// Cluster returns the replicated setup of .ci/cluster.sh (make test-cluster
// sets CLUSTER_KAFKA_BROKERS, CLUSTER_CLICKHOUSE_ADDR and CLICKHOUSE_CLUSTER),
// or skips the test.
func Cluster(t testing.TB) (brokers []string, chAddr, cluster string) {
	t.Helper()
	brokers = SplitBrokers(os.Getenv("CLUSTER_KAFKA_BROKERS"))
	chAddr, cluster = os.Getenv("CLUSTER_CLICKHOUSE_ADDR"), os.Getenv("CLICKHOUSE_CLUSTER")
	if len(brokers) == 0 || chAddr == "" || cluster == "" {
		t.Skip("cluster test: make test-cluster runs .ci/cluster.sh and sets CLUSTER_KAFKA_BROKERS, CLUSTER_CLICKHOUSE_ADDR and CLICKHOUSE_CLUSTER")
	}
	return brokers, chAddr, cluster
}

// ClusterReplicas returns the addresses of the ClickHouse replicas of
// .ci/cluster.sh (two at least) and the cluster's name, or skips the test.
func ClusterReplicas(t testing.TB) (addrs []string, cluster string) {
	t.Helper()
	chAddr, cluster := os.Getenv("CLUSTER_CLICKHOUSE_ADDR"), os.Getenv("CLICKHOUSE_CLUSTER")
	if chAddr == "" || cluster == "" {
		t.Skip("cluster test: make test-cluster runs .ci/cluster.sh and sets CLUSTER_CLICKHOUSE_ADDR and CLICKHOUSE_CLUSTER")
	}
	addrs = strings.Split(chAddr, ",")
	if len(addrs) < 2 {
		t.Skipf("CLUSTER_CLICKHOUSE_ADDR %q: want two replicas", chAddr)
	}
	return addrs, cluster
}

// SplitBrokers splits a comma-separated broker list, dropping blanks.
func SplitBrokers(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Suffix returns 8 random hex digits that make a name private to one test.
func Suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Names are the private names of one test's corner of the services.
type Names struct {
	Events, DLQ, Billing string // topics
	Group                string // consumer group
	Database             string // ClickHouse database
}

// NewNames returns names with a fresh Suffix: test.events.<sfx>,
// test.dlq.<sfx>, test.billing.<sfx>, group test-<sfx>, database test_<sfx>.
func NewNames() Names {
	sfx := Suffix()
	return Names{Events: "test.events." + sfx, DLQ: "test.dlq." + sfx, Billing: "test.billing." + sfx,
		Group: "test-" + sfx, Database: "test_" + sfx}
}

// The statements that drop a test's database (fmt verbs: database, cluster).
const (
	sqlDropDatabase          = "DROP DATABASE IF EXISTS %s"
	sqlDropDatabaseOnCluster = "DROP DATABASE IF EXISTS %s ON CLUSTER %s"
)

// DropDatabaseAtEnd drops database db (ON CLUSTER cluster unless cluster is
// empty) through conn at the end of the test if it passed, and keeps it for
// inspection, saying so, if it failed; either way it closes conn.
func DropDatabaseAtEnd(t testing.TB, conn driver.Conn, addr, db, cluster string) {
	t.Cleanup(func() {
		if !t.Failed() {
			stmt := fmt.Sprintf(sqlDropDatabase, db)
			if cluster != "" {
				stmt = fmt.Sprintf(sqlDropDatabaseOnCluster, db, cluster)
			}
			_ = conn.Exec(context.Background(), stmt)
		} else {
			t.Logf("kept ClickHouse database %s on %s for inspection", db, addr)
		}
		conn.Close()
	})
}

package telemetry

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	clickhouseErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immeter_clickhouse_errors_total",
		Help: "ClickHouse calls that failed, by operation (query, insert, exec, ping).",
	}, []string{"op"})
	rowsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immeter_clickhouse_rows_written_total",
		Help: "Rows inserted into ClickHouse, by table.",
	}, []string{"table"})
	kafkaErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immeter_kafka_errors_total",
		Help: "Kafka calls that failed, by operation (fetch, join_group, commit, publish_dlq, publish_billing, produce, metadata).",
	}, []string{"op"})
)

// The operations of immeter_kafka_errors_total.
const (
	KafkaFetch          = "fetch"
	KafkaJoinGroup      = "join_group"
	KafkaCommit         = "commit"
	KafkaPublishDLQ     = "publish_dlq"
	KafkaPublishBilling = "publish_billing"
	KafkaProduce        = "produce"
)

func init() {
	for _, op := range []string{"query", "insert", "exec", "ping"} {
		clickhouseErrors.WithLabelValues(op)
	}
	for _, op := range []string{KafkaFetch, KafkaJoinGroup, KafkaCommit, KafkaPublishDLQ, KafkaPublishBilling, KafkaProduce, "metadata"} {
		kafkaErrors.WithLabelValues(op)
	}
}

// KafkaError counts a failed Kafka call of operation op (one of the Kafka constants).
func KafkaError(op string) { kafkaErrors.WithLabelValues(op).Inc() }

// ClickHouse returns conn counting its failed calls by operation and the
// rows its batches inserted by table. It changes nothing else.
func ClickHouse(conn driver.Conn) driver.Conn {
	if conn == nil {
		return nil
	}
	if _, ok := conn.(countingConn); ok {
		return conn
	}
	return countingConn{conn}
}

type countingConn struct{ driver.Conn }

func chError(op string, err error) error {
	if err != nil && !errors.Is(err, sql.ErrNoRows) && !errors.Is(err, context.Canceled) {
		clickhouseErrors.WithLabelValues(op).Inc()
	}
	return err
}

func (c countingConn) Query(ctx context.Context, query string, args ...any) (driver.Rows, error) {
	rows, err := c.Conn.Query(ctx, query, args...)
	if err != nil {
		return nil, chError("query", err)
	}
	return countingRows{rows}, nil
}

func (c countingConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	return countingRow{c.Conn.QueryRow(ctx, query, args...)}
}

func (c countingConn) Select(ctx context.Context, dest any, query string, args ...any) error {
	return chError("query", c.Conn.Select(ctx, dest, query, args...))
}

func (c countingConn) Exec(ctx context.Context, query string, args ...any) error {
	return chError("exec", c.Conn.Exec(ctx, query, args...))
}

func (c countingConn) Ping(ctx context.Context) error {
	return chError("ping", c.Conn.Ping(ctx))
}

func (c countingConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, chError("insert", err)
	}
	return &countingBatch{Batch: b, table: insertTable(query)}, nil
}

// insertTable is the table of "INSERT INTO table (...)", "" when there is none.
func insertTable(query string) string {
	f := strings.Fields(query)
	if len(f) < 3 || !strings.EqualFold(f[0], "INSERT") || !strings.EqualFold(f[1], "INTO") {
		return ""
	}
	t, _, _ := strings.Cut(f[2], "(")
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		t = t[i+1:] // database.table: the database is per installation
	}
	return strings.Trim(t, "`\"")
}

type countingBatch struct {
	driver.Batch
	table string
}

func (b *countingBatch) Send() error {
	n := b.Batch.Rows()
	if err := b.Batch.Send(); err != nil {
		return chError("insert", err)
	}
	if b.table != "" && n > 0 {
		rowsWritten.WithLabelValues(b.table).Add(float64(n))
	}
	return nil
}

type countingRows struct{ driver.Rows }

func (r countingRows) Err() error { return chError("query", r.Rows.Err()) }

type countingRow struct{ driver.Row }

func (r countingRow) Err() error { return chError("query", r.Row.Err()) }

func (r countingRow) Scan(dest ...any) error { return chError("query", r.Row.Scan(dest...)) }

func (r countingRow) ScanStruct(dest any) error { return chError("query", r.Row.ScanStruct(dest)) }

package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/schemas"
)

// Retention of event_ids. Its ids are keyed by the event's day, and an
// event of a day before the accepted window (minDay, from MAX_EVENT_AGE) is
// rejected before its id is looked up, so the ids of those days are never
// read again. event_ids is partitioned by day (migration 0016): a day is
// dropped as a whole partition (ClickHouse 18.16 has no TTL).

// IDsMargin is how many days before its window an aggregator keeps ids:
// aggregators whose clocks differ by less than that never drop a day
// another one still accepts.
const IDsMargin = 1

// sqlIDDays lists the days of event_ids held by the server (partition ids,
// YYYYMMDD) before a day (the same form).
const sqlIDDays = `SELECT DISTINCT partition FROM system.parts
	WHERE database = currentDatabase() AND table = 'event_ids' AND active AND partition < ?`

// sqlIDsEngine is event_ids' table engine.
const sqlIDsEngine = `SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'event_ids'`

// ErrIDsKept says the server cannot drop days of event_ids safely: on a
// replicated table before ClickHouse 20.4, DROP PARTITION leaves the
// dropped partition's last quorum-written part in ZooKeeper (quorum/
// last_part), and every sequentially consistent SELECT of the table then
// fails on every replica ("Replica doesn't have part … which was
// successfully written to quorum"): the aggregator could no longer load
// its ids. Fixed by ClickHouse#10188.
var ErrIDsKept = errors.New("event_ids is replicated on a ClickHouse release before 20.4, whose DROP PARTITION breaks sequentially consistent reads: its days are kept")

// sqlDropIDDay drops one day of event_ids (%s: its partition, YYYYMMDD). On
// a replicated table the drop is replicated like an insert: no ON CLUSTER.
// Dropping a day already gone changes nothing.
const sqlDropIDDay = `ALTER TABLE event_ids DROP PARTITION %s`

// idsRetry is how long after a failed drop the next flush tries again.
const idsRetry = time.Minute

// retainIDs drops the days of event_ids before minDay minus IDsMargin,
// once per new window: the first call of a process and then once a day. A
// failure is logged and counted, and a flush idsRetry later tries again. Several
// partitions flush at once: one of them does it, the others go on.
func (a *Aggregator) retainIDs(ctx context.Context, minDay schemas.Day, log *slog.Logger) {
	before := minDay - IDsMargin
	if !a.retainMu.TryLock() {
		return
	}
	defer a.retainMu.Unlock()
	if before <= a.idsDroppedBefore || time.Now().Before(a.idsRetryAt) {
		return
	}
	days, err := DropIDDays(ctx, a.conn, before)
	if errors.Is(err, ErrIDsKept) {
		log.Warn("aggregate: the days of event_ids before the accepted window are kept (README, \"Storage of ids\")", "err", err)
		a.idsDroppedBefore = math.MaxInt32 // never again in this process
		return
	}
	for _, d := range days {
		log.Info("aggregate: dropped the event ids of a day before the accepted window", "day", d, "window_from", minDay)
	}
	a.metrics.idDaysDropped.Add(float64(len(days)))
	if err != nil {
		a.metrics.idDropFailures.Inc()
		log.Warn("aggregate: drop event ids before the accepted window; retrying in a minute", "before", before, "err", err)
		a.idsRetryAt = time.Now().Add(idsRetry)
		return
	}
	a.idsDroppedBefore = before
}

// DropIDDays drops the days of event_ids before a day, and returns those
// it dropped (YYYY-MM-DD), in order.
// It returns ErrIDsKept, and drops nothing, where dropping is not safe.
func DropIDDays(ctx context.Context, conn driver.Conn, before schemas.Day) ([]string, error) {
	if err := canDropIDDays(ctx, conn); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, sqlIDDays, dayPartition(before))
	if err != nil {
		return nil, fmt.Errorf("list event_ids days: %w", err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list event_ids days: %w", err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list event_ids days: %w", err)
	}
	var dropped []string
	slices.Sort(parts) // all YYYYMMDD: oldest first
	for _, p := range parts {
		d, err := time.Parse("20060102", p)
		if err != nil || dayPartition(schemas.DayOf(d, time.UTC)) != p {
			return dropped, fmt.Errorf("event_ids: partition %q is not a day (YYYYMMDD): is migration 0016 applied?", p)
		}
		if err := conn.Exec(ctx, fmt.Sprintf(sqlDropIDDay, p)); err != nil {
			return dropped, fmt.Errorf("drop event_ids day %s: %w", d.Format(time.DateOnly), err)
		}
		dropped = append(dropped, d.Format(time.DateOnly))
	}
	return dropped, nil
}

// canDropIDDays returns ErrIDsKept when event_ids is replicated on a
// server before 20.4.
func canDropIDDays(ctx context.Context, conn driver.Conn) error {
	v, err := conn.ServerVersion()
	if err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	if v.Version.Major > 20 || v.Version.Major == 20 && v.Version.Minor >= 4 {
		return nil
	}
	var engine string
	if err := conn.QueryRow(ctx, sqlIDsEngine).Scan(&engine); err != nil {
		return fmt.Errorf("read event_ids engine: %w", err)
	}
	if strings.HasPrefix(engine, "Replicated") {
		return ErrIDsKept
	}
	return nil
}

// dayPartition is a day's partition id in event_ids: YYYYMMDD.
func dayPartition(d schemas.Day) string { return d.Date().Format("20060102") }

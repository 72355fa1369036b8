package aggregate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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

// sqlDropIDDay drops one day of event_ids (%s: its partition, YYYYMMDD). On
// a replicated table the drop is replicated like an insert: no ON CLUSTER.
// Dropping a day already gone changes nothing.
const sqlDropIDDay = `ALTER TABLE event_ids DROP PARTITION %s`

// retainIDs drops the days of event_ids before minDay minus IDsMargin,
// once per new window: the first call of a process and then once a day. A
// failure is logged and counted, and the next flush tries again. Several
// partitions flush at once: one of them does it, the others go on.
func (a *Aggregator) retainIDs(ctx context.Context, minDay schemas.Day, log *slog.Logger) {
	before := minDay - IDsMargin
	if !a.retainMu.TryLock() {
		return
	}
	defer a.retainMu.Unlock()
	if before <= a.idsDroppedBefore {
		return
	}
	days, err := DropIDDays(ctx, a.conn, before)
	for _, d := range days {
		log.Info("aggregate: dropped the event ids of a day before the accepted window", "day", d, "window_from", minDay)
	}
	a.metrics.idDaysDropped.Add(float64(len(days)))
	if err != nil {
		a.metrics.idDropFailures.Inc()
		log.Warn("aggregate: drop event ids before the accepted window; retrying at the next flush", "before", before, "err", err)
		return
	}
	a.idsDroppedBefore = before
}

// DropIDDays drops the days of event_ids before a day, and returns those
// it dropped (YYYY-MM-DD), in order.
func DropIDDays(ctx context.Context, conn driver.Conn, before schemas.Day) ([]string, error) {
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

// dayPartition is a day's partition id in event_ids: YYYYMMDD.
func dayPartition(d schemas.Day) string { return d.Date().Format("20060102") }

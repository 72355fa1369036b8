package e2ebench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// sqlRawEventsTable is the peers' design: every event stored as it came.
const sqlRawEventsTable = `CREATE TABLE IF NOT EXISTS raw_events (
	app        UInt32,
	time       DateTime,
	type       String,
	user       String,
	id         String,
	platform   String,
	channel    String,
	count      UInt32,
	op         String,
	group_id   String,
	group_type String,
	media      String,
	seconds    UInt32,
	edition    String
) ENGINE = MergeTree PARTITION BY toYYYYMM(time) ORDER BY (app, time)`

// The peers' month close: exact MAU and the counters, per app.
const (
	sqlPeerMAU = `SELECT app, uniqExact(user) FROM raw_events
		WHERE type = 'login' AND time >= toDateTime(?) AND time < toDateTime(?) GROUP BY app`
	sqlPeerCounters = `SELECT app, countIf(type = 'login'),
		sumIf(count, type = 'message' AND channel = 'c2c'), sumIf(count, type = 'message' AND channel = 'group'),
		sumIf(count, type = 'message' AND channel = 'community'), sumIf(count, type = 'message' AND channel = 'live'),
		countIf(type = 'group' AND op = 'create'), countIf(type = 'group' AND op = 'dissolve'),
		sumIf(seconds, type = 'call' AND media = 'audio'), sumIf(seconds, type = 'call' AND media = 'video')
		FROM raw_events WHERE time >= toDateTime(?) AND time < toDateTime(?) GROUP BY app`
)

// peerFigures compares the two designs on the same stream.
type peerFigures struct {
	events     int64
	loadTime   time.Duration // reading the topic and inserting raw rows
	rawBytes   int64
	rawRows    int64
	ourBytes   int64
	ourRows    int64
	ourTables  []tableSize
	rawQuery   time.Duration // median month-close query time, raw events
	ourQuery   time.Duration // median rollup.ReadMonth
	rawApps    int
	ourApps    int
	mauMatches bool // exact MAU per app equal in both
}

type tableSize struct {
	name        string
	rows, bytes int64
}

func (e *env) peer(ctx context.Context) (*peerFigures, error) {
	f := &peerFigures{}
	if err := e.conn.Exec(ctx, sqlRawEventsTable); err != nil {
		return nil, err
	}
	end, err := e.endOffsets(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for p, last := range end {
		n, err := e.loadRaw(ctx, p, last)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		f.events += n
	}
	f.loadTime = time.Since(start)
	e.log.Info("bench: raw events stored", "events", f.events, "in", f.loadTime.Round(time.Millisecond))

	// Sizes after merging everything, so both sides are at their smallest.
	tables, err := e.tableSizes(ctx, true)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		switch t.name {
		case "raw_events":
			f.rawBytes, f.rawRows = t.bytes, t.rows
		case "billing_records", "billing_months", "billing_published", "schema_migrations":
		default:
			f.ourBytes += t.bytes
			f.ourRows += t.rows
			f.ourTables = append(f.ourTables, t)
		}
	}

	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	m := schemas.MonthOf(time.Now(), loc)
	from, to := m.Start(loc).Unix(), m.End(loc).Unix()
	var rawMAU map[uint32]uint64
	var ours map[uint32]*rollup.MonthUsage
	var rawTimes, ourTimes []time.Duration
	for range 3 {
		t0 := time.Now()
		rawMAU, err = e.peerMonth(ctx, from, to)
		if err != nil {
			return nil, err
		}
		rawTimes = append(rawTimes, time.Since(t0))
		t0 = time.Now()
		ours, err = rollup.ReadMonth(ctx, e.conn, m, loc)
		if err != nil {
			return nil, err
		}
		ourTimes = append(ourTimes, time.Since(t0))
	}
	slices.Sort(rawTimes)
	slices.Sort(ourTimes)
	f.rawQuery, f.ourQuery = rawTimes[1], ourTimes[1]
	f.rawApps, f.ourApps = len(rawMAU), len(ours)
	f.mauMatches = true
	for app, n := range rawMAU {
		if u := ours[app]; u == nil || u.Usage.MAU != n {
			f.mauMatches = false
		}
	}
	return f, nil
}

// loadRaw copies partition p of the events topic, up to offset last, into
// raw_events, 200k rows an insert.
func (e *env) loadRaw(ctx context.Context, p int, last int64) (int64, error) {
	conn, err := kafka.DialLeader(ctx, "tcp", e.cfg.Brokers[0], e.events, p)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := conn.Seek(0, kafka.SeekAbsolute); err != nil {
		return 0, err
	}
	var rows rawRows
	var n int64
	offset := int64(0)
	for offset < last {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		b := conn.ReadBatch(1, 16<<20)
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			offset = m.Offset + 1
			if ev, err := schemas.DecodeEvent(m.Value); err == nil {
				rows.add(ev)
			}
			if rows.len() >= 200_000 {
				if err := rows.insert(ctx, e); err != nil {
					b.Close()
					return n, err
				}
			}
		}
		if err := b.Close(); err != nil && !errors.Is(err, kafka.OffsetOutOfRange) {
			return n, err
		}
		n = offset
	}
	return n, rows.insert(ctx, e)
}

// rawRows are columns of raw_events waiting for an insert.
type rawRows struct {
	app                                                           []uint32
	at                                                            []time.Time
	typ, user, id, platform, channel, op, group, gtype, media, ed []string
	count, seconds                                                []uint32
}

func (r *rawRows) len() int { return len(r.app) }

func (r *rawRows) add(e schemas.Event) {
	r.app = append(r.app, e.App)
	r.at = append(r.at, e.Time.UTC().Truncate(time.Second))
	r.typ = append(r.typ, string(e.Type))
	r.user = append(r.user, e.User)
	r.id = append(r.id, e.ID)
	r.platform = append(r.platform, e.Platform)
	r.channel = append(r.channel, e.Channel)
	r.count = append(r.count, uint32(e.Count))
	r.op = append(r.op, e.Op)
	r.group = append(r.group, e.Group)
	r.gtype = append(r.gtype, e.GroupType)
	r.media = append(r.media, e.Media)
	r.seconds = append(r.seconds, uint32(e.Seconds))
	r.ed = append(r.ed, e.Edition)
}

func (r *rawRows) insert(ctx context.Context, e *env) error {
	if r.len() == 0 {
		return nil
	}
	b, err := e.conn.PrepareBatch(ctx, sqlInsertRawEvents)
	if err != nil {
		return err
	}
	cols := []any{r.app, r.at, r.typ, r.user, r.id, r.platform, r.channel, r.count, r.op, r.group, r.gtype, r.media, r.seconds, r.ed}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("raw_events column %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert raw_events: %w", err)
	}
	*r = rawRows{}
	return nil
}

// peerMonth runs the peers' month close and returns the exact MAU per app.
func (e *env) peerMonth(ctx context.Context, from, to int64) (map[uint32]uint64, error) {
	mau := map[uint32]uint64{}
	rows, err := e.conn.Query(ctx, sqlPeerMAU, from, to)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var app uint32
		var n uint64
		if err := rows.Scan(&app, &n); err != nil {
			rows.Close()
			return nil, err
		}
		mau[app] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = e.conn.Query(ctx, sqlPeerCounters, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var app uint32
		var v [9]uint64
		if err := rows.Scan(&app, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]); err != nil {
			return nil, err
		}
	}
	return mau, rows.Err()
}

// tableSizes returns the active parts' rows and bytes on disk per table,
// after OPTIMIZE … FINAL when merge is set.
func (e *env) tableSizes(ctx context.Context, merge bool) ([]tableSize, error) {
	var names []string
	rows, err := e.conn.Query(ctx, sqlMergeTrees, e.ch.Database)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if merge {
		for _, n := range names {
			if err := e.conn.Exec(ctx, fmt.Sprintf(sqlOptimizeFinal, n)); err != nil {
				return nil, fmt.Errorf("optimize %s: %w", n, err)
			}
		}
	}
	rows, err = e.conn.Query(ctx, sqlTableSizes, e.ch.Database)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tableSize
	for rows.Next() {
		var t tableSize
		var r, b uint64
		if err := rows.Scan(&t.name, &r, &b); err != nil {
			return nil, err
		}
		t.rows, t.bytes = int64(r), int64(b)
		out = append(out, t)
	}
	return out, rows.Err()
}

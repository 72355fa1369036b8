package aggregate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// store reads and writes a partition's state in ClickHouse.
type store struct {
	conn   driver.Conn
	group  string
	topic  string
	dlq    *kafka.Writer
	writer string // this process's name in user_sketches rows
	// inserts bounds the set inserts in flight across partitions, to
	// stay within the connection pool.
	inserts chan struct{}
}

// maxSetInserts is how many set inserts an aggregator sends at once.
const maxSetInserts = 8

const countersCols = `logins, messages_c2c, messages_group, messages_community, messages_live,
	groups_created, groups_dissolved, calls_audio, calls_video,
	call_seconds_audio, call_seconds_video, duplicates`

const countersArgMax = `argMax(logins, version), argMax(messages_c2c, version), argMax(messages_group, version),
	argMax(messages_community, version), argMax(messages_live, version),
	argMax(groups_created, version), argMax(groups_dissolved, version),
	argMax(calls_audio, version), argMax(calls_video, version),
	argMax(call_seconds_audio, version), argMax(call_seconds_video, version), argMax(duplicates, version)`

func (c *Counters) fields() []any {
	return []any{&c.Logins, &c.MessagesC2C, &c.MessagesGroup, &c.MessagesCommunity, &c.MessagesLive,
		&c.GroupsCreated, &c.GroupsDissolved, &c.CallsAudio, &c.CallsVideo,
		&c.CallSecondsAudio, &c.CallSecondsVideo, &c.Duplicates}
}

// values are the counters in the order of countersCols.
func (c *Counters) values() [12]uint64 {
	return [12]uint64{c.Logins, c.MessagesC2C, c.MessagesGroup, c.MessagesCommunity, c.MessagesLive,
		c.GroupsCreated, c.GroupsDissolved, c.CallsAudio, c.CallsVideo,
		c.CallSecondsAudio, c.CallSecondsVideo, c.Duplicates}
}

// storedNext returns the partition's stored position, or -1.
func (st *store) storedNext(ctx context.Context, partition int32) (int64, error) {
	var n, rows uint64
	if err := st.conn.QueryRow(ctx, sqlReadPosition, st.group, st.topic, partition).Scan(&n, &rows); err != nil {
		return 0, fmt.Errorf("read consumer_offsets: %w", err)
	}
	if rows == 0 {
		return -1, nil
	}
	return int64(n), nil
}

// loadDays reads the stored counters of the partition's days from minDay on.
func (st *store) loadDays(ctx context.Context, s *partitionState, from schemas.Day) error {
	rows, err := st.conn.Query(ctx, sqlLoadDays, s.partition, from.String())
	if err != nil {
		return fmt.Errorf("load daily_usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var app uint32
		var day time.Time
		ds := &dayState{}
		if err := rows.Scan(append([]any{&app, &day, &ds.version}, ds.c.fields()...)...); err != nil {
			return fmt.Errorf("load daily_usage: %w", err)
		}
		s.days[dayKey{app, schemas.DayOf(day, time.UTC)}] = ds
	}
	return rows.Err()
}

// loadDay reads one stored day; zero when there is none.
func (st *store) loadDay(ctx context.Context, partition int32, k dayKey) (Counters, uint64, error) {
	var c Counters
	var v uint64
	rows, err := st.conn.Query(ctx, sqlLoadDay, partition, k.app, k.day.String())
	if err != nil {
		return c, 0, fmt.Errorf("load daily_usage: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(append([]any{&v}, c.fields()...)...); err != nil {
			return c, 0, fmt.Errorf("load daily_usage: %w", err)
		}
	}
	return c, v, rows.Err()
}

// loadIDs reads the event ids first seen in the partition from minDay on;
// those first seen at or after offset from are read again from Kafka.
func (st *store) loadIDs(ctx context.Context, s *partitionState, from uint64) error {
	if s.filter != nil {
		return st.loadFilter(ctx, s)
	}
	rows, err := st.conn.Query(ctx, sqlLoadIDs, s.partition, s.minDay.String())
	if err != nil {
		return fmt.Errorf("load event_ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var day time.Time
		var hi, lo, offset uint64
		if err := rows.Scan(&day, &hi, &lo, &offset); err != nil {
			return fmt.Errorf("load event_ids: %w", err)
		}
		h := xxh3.Uint128{Hi: hi, Lo: lo}
		if _, ok := s.ids.Get(h); !ok {
			s.ids.Add(h, schemas.DayOf(day, time.UTC))
		}
		if offset >= from {
			s.replay[h] = offset
		}
	}
	return rows.Err()
}

// loadFilter puts the ids stored for the partition from minDay on into its
// filter, each day's sized for the ids it has. No offsets are kept: a
// filter hit is looked up in event_ids (confirm), which also tells a
// message read again from a duplicate.
func (st *store) loadFilter(ctx context.Context, s *partitionState) error {
	rows, err := st.conn.Query(ctx, sqlCountIDs, s.partition, s.minDay.String())
	if err != nil {
		return fmt.Errorf("count event_ids: %w", err)
	}
	for rows.Next() {
		var day time.Time
		var n uint64
		if err := rows.Scan(&day, &n); err != nil {
			rows.Close()
			return fmt.Errorf("count event_ids: %w", err)
		}
		// Room for an eighth more: today's filter fills on.
		s.filter.dayOf(schemas.DayOf(day, time.UTC), int(n+n/8))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count event_ids: %w", err)
	}
	rows, err = st.conn.Query(ctx, sqlLoadFilter, s.partition, s.minDay.String())
	if err != nil {
		return fmt.Errorf("load event_ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var day time.Time
		var hi, lo uint64
		if err := rows.Scan(&day, &hi, &lo); err != nil {
			return fmt.Errorf("load event_ids: %w", err)
		}
		s.filter.Add(xxh3.Uint128{Hi: hi, Lo: lo}, schemas.DayOf(day, time.UTC))
	}
	return rows.Err()
}

// maxConfirm is how many ids one lookup in event_ids asks for: about 60
// bytes each, within the server's max_query_size (256 KiB by default).
const maxConfirm = 2000

// confirm looks the parked events' ids up in event_ids, from minDay on, and
// returns those found with the day and offset each was first seen at. On a
// cluster the read is sequentially consistent (schemas.ReplicaSettings), so
// it sees every id this partition's flushes wrote.
func (st *store) confirm(ctx context.Context, s *partitionState) (map[xxh3.Uint128]storedID, error) {
	found := map[xxh3.Uint128]storedID{}
	keys := make([]any, 0, min(len(s.parked), maxConfirm))
	ask := func() error {
		rows, err := st.conn.Query(ctx, sqlConfirmIDs, s.partition, s.minDay.String(), clickhouse.GroupSet{Value: keys})
		if err != nil {
			return fmt.Errorf("confirm event_ids: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var day time.Time
			var hi, lo, offset uint64
			if err := rows.Scan(&day, &hi, &lo, &offset); err != nil {
				return fmt.Errorf("confirm event_ids: %w", err)
			}
			h := xxh3.Uint128{Hi: hi, Lo: lo}
			if r, ok := found[h]; !ok || offset < r.offset {
				found[h] = storedID{day: schemas.DayOf(day, time.UTC), offset: offset}
			}
		}
		return rows.Err()
	}
	for _, p := range s.parked {
		keys = append(keys, clickhouse.GroupSet{Value: []any{p.e.App, p.h.Hi, p.h.Lo}})
		if len(keys) == maxConfirm {
			if err := ask(); err != nil {
				return nil, err
			}
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		if err := ask(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// flush makes everything folded so far durable, in an order that keeps a
// crash at any point harmless (see README, "Exactly once"):
//  1. dead letters to the DLQ topic and table;
//  2. at once: the sets (event ids, user days, sketches, plan and live-group changes),
//     which writing twice changes nothing, and the absolute counters of
//     dirty days, each row versioned with the offset it is complete up to;
//  3. the partition's next offset, once all of 2 landed.
//
// The counters need not wait for the sets: until the offset lands, a crash
// replays the partition from the previous offset, and a replayed event adds
// its id, user and sketch entry again even where the stored counters
// already hold it.
//
// First of all it checks that the stored position is still the one this
// state last loaded or wrote: if ClickHouse lost it (a database dropped and
// migrated again, a restore from an older backup) or another aggregator
// moved it, writing the state's absolute counters onto what is there now
// would be wrong, so it returns errPositionMoved and writes nothing.
func (st *store) flush(ctx context.Context, s *partitionState, now time.Time) error {
	cur, err := st.storedNext(ctx, s.partition)
	if err != nil {
		return err
	}
	if cur != s.stored && cur != int64(s.next) { // s.next: a failed attempt may have stored it
		return fmt.Errorf("%w: partition %d: ClickHouse has %d, this aggregator stored %d", errPositionMoved, s.partition, cur, s.stored)
	}
	if err := st.flushDLQ(ctx, s, now); err != nil {
		return err
	}
	if err := st.flushRows(ctx, s, now); err != nil {
		return err
	}
	err = schemas.InsertRow(ctx, st.conn, sqlInsertPosition, st.group, st.topic, s.partition, s.next, now.UTC().Truncate(time.Second))
	if err != nil {
		return fmt.Errorf("write consumer_offsets: %w", err)
	}
	s.stored = int64(s.next)
	return nil
}

// errPositionMoved says a partition's stored position is not the one its
// state was loaded at or last wrote: the state must be loaded again.
var errPositionMoved = errors.New("stored position changed under this aggregator")

// flushDLQ publishes the pending dead letters on the DLQ topic and writes
// them to dead_letters, keyed by source topic, partition, offset and epoch:
// a topic deleted and created again reuses offsets, never an epoch, and a
// dead letter written again after a crash (same offset and epoch) replaces
// its row.
func (st *store) flushDLQ(ctx context.Context, s *partitionState, now time.Time) error {
	if len(s.pendingDLQ) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(s.pendingDLQ))
	p := strconv.Itoa(int(s.partition))
	epoch := strconv.FormatUint(uint64(s.epoch), 10)
	for i, d := range s.pendingDLQ {
		msgs[i] = kafka.Message{Key: d.key, Value: d.value, Headers: []kafka.Header{
			{Key: "immeter-reason", Value: []byte(d.reason)},
			{Key: "immeter-source-topic", Value: []byte(st.topic)},
			{Key: "immeter-source-partition", Value: []byte(p)},
			{Key: "immeter-source-offset", Value: []byte(strconv.FormatInt(d.offset, 10))},
			{Key: "immeter-source-epoch", Value: []byte(epoch)},
		}}
	}
	if err := st.dlq.WriteMessages(ctx, msgs...); err != nil {
		telemetry.KafkaError(telemetry.KafkaPublishDLQ)
		return fmt.Errorf("publish to dead-letter topic %s: %w", st.dlq.Topic, err)
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertDeadLetters)
	if err != nil {
		return fmt.Errorf("write dead_letters: %w", err)
	}
	at := now.UTC().Truncate(time.Second)
	for _, d := range s.pendingDLQ {
		if err := b.Append(at, st.topic, s.partition, d.offset, s.epoch, d.app, d.reason, string(d.value)); err != nil {
			return fmt.Errorf("write dead_letters: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write dead_letters: %w", err)
	}
	s.pendingDLQ = s.pendingDLQ[:0]
	return nil
}

// flushRows writes the five sets and the counters at once: they are
// independent of each other, and only the offset must wait for all of them.
func (st *store) flushRows(ctx context.Context, s *partitionState, now time.Time) error {
	counters, sketches := s.changed()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	wg.Go(func() { errs[5] = st.flushCounters(ctx, s, counters, now) })
	flushSketches := func(ctx context.Context, s *partitionState) error { return st.flushSketches(ctx, s, sketches) }
	for i, f := range []func(context.Context, *partitionState) error{st.flushIDs, st.flushUsers, st.flushPlans, st.flushLive, flushSketches} {
		wg.Go(func() {
			select {
			case st.inserts <- struct{}{}:
				defer func() { <-st.inserts }()
				errs[i] = f(ctx, s)
			case <-ctx.Done():
				errs[i] = ctx.Err()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (st *store) flushIDs(ctx context.Context, s *partitionState) error {
	if len(s.pendingIDs) == 0 {
		return nil
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertEventIDs)
	if err != nil {
		return fmt.Errorf("write event_ids: %w", err)
	}
	n := len(s.pendingIDs)
	parts, apps, days := make([]int32, n), make([]uint32, n), make([]time.Time, n)
	his, los, offsets := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	for i, r := range s.pendingIDs {
		parts[i], apps[i], days[i], his[i], los[i], offsets[i] = s.partition, r.app, r.day.Date(), r.id.Hi, r.id.Lo, r.offset
	}
	if err := appendColumns(b, parts, apps, days, his, los, offsets); err != nil {
		return fmt.Errorf("write event_ids: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write event_ids: %w", err)
	}
	s.durable(s.pendingIDs)
	s.pendingIDs = s.pendingIDs[:0]
	return nil
}

func (st *store) flushUsers(ctx context.Context, s *partitionState) error {
	if len(s.pendingUsers) == 0 {
		return nil
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertUserDays)
	if err != nil {
		return fmt.Errorf("write user_days: %w", err)
	}
	n := len(s.pendingUsers)
	apps, days, users := make([]uint32, n), make([]time.Time, n), make([]string, n)
	for i, r := range s.pendingUsers {
		apps[i], days[i], users[i] = r.app, r.day.Date(), r.user
	}
	if err := appendColumns(b, apps, days, users); err != nil {
		return fmt.Errorf("write user_days: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write user_days: %w", err)
	}
	s.pendingUsers = s.pendingUsers[:0]
	return nil
}

func (st *store) flushPlans(ctx context.Context, s *partitionState) error {
	if len(s.pendingPlans) == 0 {
		return nil
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertPlanChanges)
	if err != nil {
		return fmt.Errorf("write plan_changes: %w", err)
	}
	for _, e := range s.pendingPlans {
		at := e.Time.UTC()
		if err := b.Append(e.App, at.Truncate(time.Second), uint32(at.Nanosecond()), e.Edition, e.ID); err != nil {
			return fmt.Errorf("write plan_changes: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write plan_changes: %w", err)
	}
	s.pendingPlans = s.pendingPlans[:0]
	return nil
}

// dayRef is a day's state with its key.
type dayRef struct {
	k  dayKey
	st *dayState
}

// changed returns the days whose counters and those whose sketches are to
// be written, in one pass over the days: reading a day's flags is likely a
// cache miss, and the two writers ran a pass each.
func (s *partitionState) changed() (counters, sketches []dayRef) {
	for k, d := range s.days {
		if d.dirty {
			counters = append(counters, dayRef{k, d})
		}
		if d.sketchDirty {
			sketches = append(sketches, dayRef{k, d})
		}
	}
	return counters, sketches
}

func (st *store) flushSketches(ctx context.Context, s *partitionState, sketches []dayRef) error {
	if len(sketches) > 0 {
		b, err := st.conn.PrepareBatch(ctx, sqlInsertSketches)
		if err != nil {
			return fmt.Errorf("write user_sketches: %w", err)
		}
		for _, r := range sketches {
			k, d := r.k, r.st
			blob, err := d.sketch.MarshalBinary()
			if err != nil {
				return fmt.Errorf("write user_sketches: %w", err)
			}
			writer := fmt.Sprintf("%s/%d", s.writer, d.sketchGen)
			if err := b.Append(k.app, k.day.Date(), writer, s.next, string(blob)); err != nil {
				return fmt.Errorf("write user_sketches: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("write user_sketches: %w", err)
		}
		for _, r := range sketches {
			r.st.sketchDirty = false
		}
	}
	return nil
}

func (st *store) flushCounters(ctx context.Context, s *partitionState, dirty []dayRef, now time.Time) error {
	if len(dirty) == 0 {
		return nil
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertDailyUsage)
	if err != nil {
		return fmt.Errorf("write daily_usage: %w", err)
	}
	at := now.UTC().Truncate(time.Second)
	n := len(dirty)
	apps, days, parts, versions, ats := make([]uint32, n), make([]time.Time, n), make([]int32, n), make([]uint64, n), make([]time.Time, n)
	var counters [12][]uint64
	for j := range counters {
		counters[j] = make([]uint64, n)
	}
	for i, r := range dirty {
		k := r.k
		apps[i], days[i], parts[i], versions[i], ats[i] = k.app, k.day.Date(), s.partition, s.next, at
		for j, v := range r.st.c.values() {
			counters[j][i] = v
		}
	}
	cols := []any{apps, days, parts, versions}
	for _, c := range counters {
		cols = append(cols, c)
	}
	if err := appendColumns(b, append(cols, ats)...); err != nil {
		return fmt.Errorf("write daily_usage: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write daily_usage: %w", err)
	}
	for _, r := range dirty {
		r.st.dirty = false
		r.st.version = s.next
	}
	return nil
}

// appendColumns appends a whole column per slice to b, in the order of the
// INSERT's columns: much cheaper than a row at a time.
func appendColumns(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// Progress returns, per partition of topic, the offset up to which the
// aggregators of group have made events durable in ClickHouse (exclusive):
// with ingest.EndOffsets, their lag.
func Progress(ctx context.Context, conn driver.Conn, group, topic string) (map[int]int64, error) {
	bases := map[int32]int64{}
	rows, err := conn.Query(ctx, sqlProgressBases, group, topic)
	if err != nil {
		return nil, fmt.Errorf("read partition_epochs: %w", err)
	}
	for rows.Next() {
		var p int32
		var base int64
		if err := rows.Scan(&p, &base); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read partition_epochs: %w", err)
		}
		bases[p] = base
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read partition_epochs: %w", err)
	}
	rows, err = conn.Query(ctx, sqlProgress, group, topic)
	if err != nil {
		return nil, fmt.Errorf("read consumer_offsets: %w", err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var p int32
		var next uint64
		if err := rows.Scan(&p, &next); err != nil {
			return nil, fmt.Errorf("read consumer_offsets: %w", err)
		}
		out[int(p)] = int64(next) - bases[p]
	}
	return out, rows.Err()
}

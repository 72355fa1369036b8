package aggregate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// Config configures an Aggregator. Start from DefaultConfig: a zero field
// means zero, not the default (only a nil Location, Now or Logger takes the
// default), and New rejects values that make no sense, naming the setting.
type Config struct {
	Brokers  []string              // Kafka bootstrap brokers (KAFKA_BROKERS); required
	Security schemas.KafkaSecurity // SASL and TLS towards the brokers; default plaintext
	Topic    string                // events topic (EVENTS_TOPIC); default im.usage.events
	DLQTopic string                // dead-letter topic (DLQ_TOPIC); default im.usage.dlq
	Group    string                // consumer group id (AGGREGATE_GROUP); default immeter-aggregate
	Location *time.Location        // billing time zone (BILLING_TZ); default +08:00

	// FlushInterval is the time between the starts of two flushes
	// (FLUSH_INTERVAL): it bounds how long folded events wait before they
	// are written to ClickHouse (and so the event-to-visible latency).
	// Default 1s; must be > 0.
	FlushInterval time.Duration
	// MaxPending forces a flush when this many rows wait; it bounds memory.
	// Default 100000; must be >= 1.
	MaxPending int

	// MaxPast and MaxFuture bound event times against the clock: an event
	// of a day before the one MaxPast ago, or later than MaxFuture from now,
	// goes to the dead-letter topic. MaxPast is also how far back event ids
	// are remembered for deduplication.
	MaxPast   time.Duration // MAX_EVENT_AGE; default 62 days (the open month and the one before); must be > 0
	MaxFuture time.Duration // MAX_EVENT_FUTURE; default 10 minutes; 0: no event dated after now

	// DedupFilterBits, when > 0, keeps the ids already written to
	// event_ids as per-day Bloom filters of about this many bits per id
	// instead of exactly (DEDUP_FILTER_BITS): memory per id falls from
	// ~20 B to about bits/8 times 1–2, and an event whose id a filter may
	// hold is looked up in event_ids at the next flush, so none is ever
	// taken for a duplicate by mistake. 0 (default): the exact table.
	// Must be within 0…64; below ~8 nearly every id is looked up (tests
	// use that), 16 makes about one in 1,000 a false hit.
	DedupFilterBits float64

	// SessionTimeout is how long the group waits for a silent member (a
	// killed process) before giving its partitions to others.
	SessionTimeout time.Duration // AGGREGATE_SESSION_TIMEOUT; default 10s; at least MinSessionTimeout

	// StuckRecheck is how often a stuck partition (see Stuck) is checked
	// again: whether an operator accepted its gap (immeter accept-gap).
	StuckRecheck time.Duration // default 5s
	// StuckLogEvery is how often a stuck partition is logged at level error.
	StuckLogEvery time.Duration // default 1m

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // nil: slog.Default() when the value is made (after the command set the log level)
}

// MinSessionTimeout is the shortest session timeout a Kafka broker accepts
// by default (group.min.session.timeout.ms).
const MinSessionTimeout = 6 * time.Second

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Topic:          schemas.EventsTopic,
		DLQTopic:       schemas.DLQTopic,
		Group:          "immeter-aggregate",
		Location:       time.FixedZone(schemas.DefaultTimezone, 8*3600),
		FlushInterval:  time.Second,
		MaxPending:     100000,
		MaxPast:        62 * 24 * time.Hour,
		MaxFuture:      10 * time.Minute,
		SessionTimeout: 10 * time.Second,
		StuckRecheck:   5 * time.Second,
		StuckLogEvery:  time.Minute,
		Now:            time.Now,
	}
}

// fill sets the nil fields to their defaults; zero values stay as given.
func (c *Config) fill() {
	d := DefaultConfig()
	if c.Location == nil {
		c.Location = d.Location
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first bad field by the name of its setting.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: required")
	case c.StuckRecheck <= 0:
		return errors.New("AGGREGATE_STUCK_RECHECK: must be > 0")
	case c.StuckLogEvery <= 0:
		return errors.New("StuckLogEvery: must be > 0")
	case c.Topic == "":
		return errors.New("EVENTS_TOPIC: must not be empty")
	case c.DLQTopic == "":
		return errors.New("DLQ_TOPIC: must not be empty")
	case c.Topic == c.DLQTopic:
		return errors.New("DLQ_TOPIC: must differ from EVENTS_TOPIC")
	case c.Group == "":
		return errors.New("AGGREGATE_GROUP: must not be empty")
	case c.FlushInterval <= 0:
		return fmt.Errorf("FLUSH_INTERVAL: must be > 0; got %s", c.FlushInterval)
	case c.MaxPending < 1:
		return fmt.Errorf("MaxPending: must be >= 1; got %d", c.MaxPending)
	case c.SessionTimeout < MinSessionTimeout:
		return fmt.Errorf("AGGREGATE_SESSION_TIMEOUT: must be >= %s (the broker's group.min.session.timeout.ms); got %s", MinSessionTimeout, c.SessionTimeout)
	case c.MaxPast <= 0:
		return fmt.Errorf("MAX_EVENT_AGE: must be > 0; got %s", c.MaxPast)
	case !(c.DedupFilterBits >= 0 && c.DedupFilterBits <= 64):
		return fmt.Errorf("DEDUP_FILTER_BITS: must be within 0…64; got %v", c.DedupFilterBits)
	case c.MaxFuture < 0:
		return fmt.Errorf("MAX_EVENT_FUTURE: must not be negative; got %s", c.MaxFuture)
	}
	return c.Security.Validate()
}

// Aggregator consumes usage events with a consumer group and keeps the
// ClickHouse rollups, exactly once (see the README's design note).
type Aggregator struct {
	cfg   Config
	conn  driver.Conn
	dlq   *kafka.Writer
	store *store

	stats Stats // updated atomically

	admin   *kafkaAdmin // set by Run
	metrics *metrics    // for Prometheus (metrics.go)

	mu    sync.Mutex
	opens int // partitions opened, to name their sketch writers
	stuck map[int]*stuckEntry

	retainMu         sync.Mutex  // retention.go
	idsDroppedBefore schemas.Day // event_ids holds no day before it
	idsRetryAt       time.Time   // after a failed drop: not before then
}

type stuckEntry struct {
	Stuck
	logged time.Time
}

// Stats counts what an Aggregator did since it started, and lists the
// partitions it is stuck on now.
type Stats struct {
	Counted, Replayed, Duplicates, Rejected, Flushes uint64
	// With DedupFilterBits: events whose id a filter held and that were
	// looked up in event_ids, and those of them whose id was not there
	// (the filter's false positives, counted as new).
	FilterHits, FilterFalseHits uint64
	Stuck                       []Stuck
}

// New returns an Aggregator writing through conn, which must have the
// migrations applied (schemas.OpenClickHouse does that).
func New(cfg Config, conn driver.Conn) (*Aggregator, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	// A transport of its own: the shared default caches topic metadata for
	// seconds and could miss a topic created just before.
	tr, err := cfg.Security.Transport("immeter-aggregate")
	if err != nil {
		return nil, err
	}
	tr.MetadataTTL = time.Second
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.DLQTopic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		Transport:    tr,
		BatchTimeout: 5 * time.Millisecond,
	}
	a := &Aggregator{
		cfg:  cfg,
		conn: conn,
		dlq:  dlq,
		store: &store{conn: conn, group: cfg.Group, topic: cfg.Topic, dlq: dlq, writer: hex.EncodeToString(id[:]),
			inserts: make(chan struct{}, maxSetInserts)},
		stuck:   map[int]*stuckEntry{},
		metrics: newMetrics(),
	}
	a.metrics.stuck = a.stuckPartitions
	return a, nil
}

// dlqTransport is the transport of the DLQ writer, which carries the
// Kafka security settings.
func (a *Aggregator) dlqTransport() *kafka.Transport { return a.dlq.Transport.(*kafka.Transport) }

// Stats returns a snapshot of the counters.
func (a *Aggregator) Stats() Stats {
	return Stats{
		Counted:         atomic.LoadUint64(&a.stats.Counted),
		Replayed:        atomic.LoadUint64(&a.stats.Replayed),
		Duplicates:      atomic.LoadUint64(&a.stats.Duplicates),
		Rejected:        atomic.LoadUint64(&a.stats.Rejected),
		Flushes:         atomic.LoadUint64(&a.stats.Flushes),
		FilterHits:      atomic.LoadUint64(&a.stats.FilterHits),
		FilterFalseHits: atomic.LoadUint64(&a.stats.FilterFalseHits),
		Stuck:           a.Stuck(),
	}
}

// Stuck lists the partitions this aggregator does not read until an
// operator decides (see Stuck), by partition; empty when all is well.
// Readiness checks and metrics report it.
func (a *Aggregator) Stuck() []Stuck {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Stuck, 0, len(a.stuck))
	for _, e := range a.stuck {
		out = append(out, e.Stuck)
	}
	slices.SortFunc(out, func(x, y Stuck) int { return x.Partition - y.Partition })
	return out
}

// setStuck records that a partition is stuck, and logs it at level error
// when it is new or was last logged StuckLogEvery ago.
func (a *Aggregator) setStuck(st *Stuck, log *slog.Logger) {
	a.mu.Lock()
	e := a.stuck[st.Partition]
	if e == nil || e.Kind != st.Kind {
		e = &stuckEntry{}
		st.Since = time.Now()
		a.stuck[st.Partition] = e
	} else {
		st.Since = e.Since
	}
	e.Stuck = *st
	logNow := time.Since(e.logged) >= a.cfg.StuckLogEvery
	if logNow {
		e.logged = time.Now()
	}
	a.mu.Unlock()
	if logNow {
		log.Error("aggregate: partition stuck; its events are not counted", "kind", st.Kind, "position", st.Position,
			"log_start", st.LogStart, "log_end", st.LogEnd, "stored_topic_id", st.StoredTopicID, "topic_id", st.TopicID,
			"since", st.Since.UTC().Format(time.RFC3339), "err", st.Error())
	}
}

// clearStuck forgets that a partition was stuck.
func (a *Aggregator) clearStuck(partition int, log *slog.Logger) {
	a.mu.Lock()
	e := a.stuck[partition]
	delete(a.stuck, partition)
	a.mu.Unlock()
	if e != nil {
		log.Warn("aggregate: partition no longer stuck", "kind", e.Kind, "stuck_since", e.Since.UTC().Format(time.RFC3339))
	}
}

// Run consumes until ctx is done, then flushes what it folded and returns.
func (a *Aggregator) Run(ctx context.Context) error {
	defer a.dlq.Close()
	admin, err := newKafkaAdmin(a.cfg.Brokers, a.cfg.Security)
	if err != nil {
		return err
	}
	defer admin.close()
	a.admin = admin
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                a.cfg.Group,
		Brokers:           a.cfg.Brokers,
		Topics:            []string{a.cfg.Topic},
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    a.cfg.SessionTimeout,
		RebalanceTimeout:  a.cfg.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		ErrorLogger:       kafka.LoggerFunc(func(f string, args ...any) { a.cfg.Logger.Debug("kafka group: " + fmt.Sprintf(f, args...)) }),
		Dialer:            &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: a.dlqTransport().TLS, SASLMechanism: a.dlqTransport().SASL},
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.cfg.Logger.Warn("consumer group: next generation", "err", err)
			telemetry.KafkaError(telemetry.KafkaJoinGroup)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
				continue
			}
		}
		parts := gen.Assignments[a.cfg.Topic]
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
		}
		a.cfg.Logger.Info("aggregate: assigned partitions", "generation", gen.ID, "partitions", ids)
		a.metrics.assign(ids)
		for _, p := range parts {
			p := p
			gen.Start(func(genCtx context.Context) {
				a.consume(ctx, genCtx, gen, p)
			})
		}
	}
}

// consume folds one partition until the generation ends (then what is not
// flushed is dropped: the next owner reads it again) or ctx is done (then
// it is flushed first). A partition that cannot be read without skipping
// events silently is held stuck (see Stuck) and checked again every
// StuckRecheck; one whose stored position changed under it is loaded again.
func (a *Aggregator) consume(ctx, genCtx context.Context, gen *kafka.Generation, p kafka.PartitionAssignment) {
	log := a.cfg.Logger.With("partition", p.ID)
	pm := a.metrics.start(p.ID)
	defer pm.stop()
	work, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-genCtx.Done():
			cancel()
		case <-work.Done():
		}
	}()
	defer func() { // revoked or stopped: no longer this aggregator's to report
		a.mu.Lock()
		delete(a.stuck, p.ID)
		a.mu.Unlock()
	}()
	lost := false
	for work.Err() == nil {
		s, start, err := a.open(work, p.ID, p.Offset, lost)
		var stuck *Stuck
		if errors.As(err, &stuck) {
			a.setStuck(stuck, log)
			select {
			case <-work.Done():
			case <-time.After(a.cfg.StuckRecheck):
			}
			continue
		}
		if err != nil {
			if work.Err() == nil {
				log.Error("aggregate: open partition", "err", err)
			}
			return
		}
		a.clearStuck(p.ID, log)
		err = a.read(ctx, genCtx, work, gen, s, start, pm, log)
		s.free()
		switch {
		case errors.Is(err, errPositionMoved):
			log.Error("aggregate: the stored position changed under this aggregator (ClickHouse data lost or restored, or another owner); loading the partition again without writing", "err", err)
			lost = true
		case errors.Is(err, errTopicChanged), errors.Is(err, kafka.OffsetOutOfRange):
			log.Error("aggregate: the partition's log changed under this aggregator; checking it again", "err", err)
		default:
			return
		}
	}
}

// errTopicChanged says the topic read has another topic ID than when the
// partition was opened: it was deleted and created again.
var errTopicChanged = errors.New("topic recreated")

// read folds a partition from offset start on, as consume says.
func (a *Aggregator) read(ctx, genCtx, work context.Context, gen *kafka.Generation, s *partitionState, start int64, pm *partitionMetrics, log *slog.Logger) error {
	work, cancel := context.WithCancel(work)
	defer cancel()
	f := newFetcher(a.cfg.Brokers, a.dlqTransport(), a.cfg.Topic, int(s.partition), log)
	f.m = pm.opened(start)
	go f.run(work, start)
	log.Info("aggregate: consuming", "from", start, "position", s.next)

	// One deadline per flush interval, not per message: a timer per
	// message cost a fifth of the consumer's CPU.
	var rctx context.Context
	rcancel := context.CancelFunc(func() {})
	defer func() { rcancel() }()
	// Flushes start every FlushInterval, counted from the start of the
	// previous one, so that an event waits at most about one interval
	// plus a flush; a slow flush still leaves a quarter interval to fold.
	nextWindow := func(from time.Time) {
		rcancel()
		deadline := from.Add(a.cfg.FlushInterval)
		if least := time.Now().Add(a.cfg.FlushInterval / 4); deadline.Before(least) {
			deadline = least
		}
		rctx, rcancel = context.WithDeadline(work, deadline)
	}
	nextWindow(time.Now())
	var cur *batch // the batch being folded, up to message i
	i := 0
	var failed error // the fetcher stopped: flush, then check the log again
	for {
		if rctx.Err() == nil && s.pending() < a.cfg.MaxPending && failed == nil {
			if cur == nil || i == cur.len() {
				if cur != nil {
					f.recycle(cur)
					cur = nil
				}
				select {
				case cur = <-f.batches:
					i = 0
				case failed = <-f.failed:
				case <-rctx.Done():
				}
				continue
			}
			offset, key, value := cur.message(i)
			i++
			if err := a.apply(work, s, offset, key, value); err != nil {
				log.Error("aggregate: apply", "offset", offset, "err", err)
				return err
			}
			continue
		}
		if genCtx.Err() != nil && ctx.Err() == nil {
			log.Info("aggregate: partition revoked; dropping unflushed state", "next", s.next)
			return nil
		}
		flushCtx := work
		if ctx.Err() != nil {
			// Shutting down: a last flush, bounded in time.
			var c context.CancelFunc
			flushCtx, c = context.WithTimeout(context.Background(), 15*time.Second)
			defer c()
		}
		started := time.Now()
		if err := a.flush(flushCtx, s, gen, log); err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
		nextWindow(started)
		if ctx.Err() != nil {
			if s.filter != nil {
				log.Info("aggregate: id filter", "ids", s.filter.Len(), "bytes", s.filter.Bytes(),
					"hits", atomic.LoadUint64(&a.stats.FilterHits), "false_hits", atomic.LoadUint64(&a.stats.FilterFalseHits))
			}
			log.Info("aggregate: stopped", "next", s.next)
			return nil
		}
	}
}

// open loads a partition's state and returns where to read from (a Kafka
// offset), or a *Stuck error. committed is the group's offset on Kafka
// (negative: none); lost says this process saw the stored position go away.
func (a *Aggregator) open(ctx context.Context, partition int, committed int64, lost bool) (*partitionState, int64, error) {
	p := int32(partition)
	pos, err := retry(ctx, a.cfg.Logger, "read position", func() (position, error) { return a.store.position(ctx, p) })
	if err != nil {
		return nil, 0, err
	}
	lr, err := retry(ctx, a.cfg.Logger, "read log offsets", func() (logRange, error) { return a.admin.logRange(ctx, a.cfg.Topic, partition) })
	if err != nil {
		return nil, 0, err
	}
	// ClickHouse, not Kafka, says what is durable: a partition it has no
	// position for is read from its first retained offset, whatever the
	// group committed on Kafka (a committed offset without a stored one
	// would skip events that were never aggregated).
	start, stuck := place(partition, pos, lr, committed, lost)
	if stuck != nil {
		return nil, 0, stuck
	}
	if pos.topicID == "" && lr.topicID != "" {
		// The first sight of this topic (or of a position stored before
		// topic IDs were): remember its ID, to know it if it is recreated.
		pos.epoch++
		pos.topicID = lr.topicID
		first := uint64(start + pos.base)
		if _, err := retry(ctx, a.cfg.Logger, "write epoch", func() (int, error) {
			return 0, writeEpoch(ctx, a.store.conn, a.cfg.Group, a.cfg.Topic, p, pos, first, a.cfg.Now())
		}); err != nil {
			return nil, 0, err
		}
	}
	s := newPartitionState(p, a.cfg.Location)
	if a.cfg.DedupFilterBits > 0 {
		s.filter = newIDFilter(a.cfg.DedupFilterBits)
	}
	s.clock, s.maxFuture = a.cfg.Now, a.cfg.MaxFuture
	s.base, s.epoch, s.stored, s.topicID = pos.base, pos.epoch, pos.next, pos.topicID
	s.next = uint64(start + pos.base)
	a.mu.Lock()
	a.opens++
	s.writer = fmt.Sprintf("%s/p%d/o%d", a.store.writer, partition, a.opens)
	a.mu.Unlock()
	now := a.cfg.Now()
	a.window(s, now)
	s.load = func(k dayKey) (Counters, uint64, error) { return a.store.loadDay(ctx, p, k) }
	recent := schemas.DayOf(now, a.cfg.Location) - 2
	if _, err := retry(ctx, a.cfg.Logger, "load state", func() (int, error) {
		clear(s.days)
		s.ids.Reset()
		clear(s.replay)
		clear(s.plans)
		if s.filter != nil {
			s.filter.free()
		}
		s.loadedFrom = recent
		if err := a.store.loadDays(ctx, s, recent); err != nil {
			return 0, err
		}
		if err := a.store.loadPlans(ctx, s); err != nil {
			return 0, err
		}
		// Without a durable position every stored id may be read again.
		return 0, a.store.loadIDs(ctx, s, uint64(max(pos.next, 0)))
	}); err != nil {
		return nil, 0, err
	}
	return s, start, nil
}

// window sets the accepted event times from the clock.
func (a *Aggregator) window(s *partitionState, now time.Time) {
	s.minDay = schemas.DayOf(now.Add(-a.cfg.MaxPast), a.cfg.Location)
	s.maxTime = now.Add(a.cfg.MaxFuture)
}

func (a *Aggregator) apply(ctx context.Context, s *partitionState, offset int64, key, value []byte) error {
	out, err := s.Apply(offset, key, value)
	for err != nil && ctx.Err() == nil {
		// Only loading an evicted day can fail: ClickHouse is away.
		a.cfg.Logger.Warn("aggregate: load day; retrying", "err", err)
		time.Sleep(time.Second)
		out, err = s.Apply(offset, key, value)
	}
	if err != nil {
		return err
	}
	a.count(s, out)
	return nil
}

// count adds an applied event's outcome to the stats and metrics.
func (a *Aggregator) count(s *partitionState, out Outcome) {
	switch out {
	case Deferred:
		return // counted when resolved
	case Counted:
		atomic.AddUint64(&a.stats.Counted, 1)
	case Replayed:
		atomic.AddUint64(&a.stats.Replayed, 1)
	case Duplicate:
		atomic.AddUint64(&a.stats.Duplicates, 1)
	case Rejected:
		atomic.AddUint64(&a.stats.Rejected, 1)
	}
	a.metrics.outcome(s.partition, out)
}

// resolve folds the events parked since the last flush, once event_ids
// said which of their ids it holds (see partitionState.resolveParked).
func (a *Aggregator) resolve(ctx context.Context, s *partitionState) error {
	found, err := a.store.confirm(ctx, s)
	if err != nil {
		return err
	}
	return s.resolveParked(found, func(out Outcome, falseHit bool) {
		atomic.AddUint64(&a.stats.FilterHits, 1)
		a.metrics.filterHits.Add(1)
		if falseHit {
			atomic.AddUint64(&a.stats.FilterFalseHits, 1)
			a.metrics.filterFalseHits.Add(1)
		}
		a.count(s, out)
	})
}

// flush writes the state, retrying with backoff while ClickHouse or Kafka
// is unavailable; consumption waits meanwhile, so memory stays bounded.
func (a *Aggregator) flush(ctx context.Context, s *partitionState, gen *kafka.Generation, log *slog.Logger) error {
	now := a.cfg.Now()
	if len(s.parked) > 0 {
		// Before anything is written: the parked events are part of what
		// the flush makes durable.
		if _, err := retry(ctx, log, "look up ids in event_ids", func() (int, error) { return 0, a.resolve(ctx, s) }); err != nil {
			return err
		}
	}
	_, err := retry(ctx, log, "flush", func() (int, error) {
		// The topic must still be the one read: events of a topic
		// recreated under the fetcher are not written with the old
		// topic's positions.
		if s.topicID != "" {
			id, err := a.admin.topicID(ctx, a.cfg.Topic)
			if err != nil {
				return 0, err
			}
			if id != s.topicID {
				return 0, fmt.Errorf("%w: topic id %s, opened with %s", errTopicChanged, id, s.topicID)
			}
		}
		return 0, a.metrics.flush(s, func() error { return a.store.flush(ctx, s, now) })
	})
	if err != nil {
		return err
	}
	atomic.AddUint64(&a.stats.Flushes, 1)
	// Kafka's committed offset is informational (lag monitoring): the
	// durable position is in ClickHouse, written above.
	if err := gen.CommitOffsets(map[string]map[int]int64{a.cfg.Topic: {int(s.partition): int64(s.next) - s.base}}); err != nil {
		log.Debug("aggregate: commit offset", "err", err)
		telemetry.KafkaError(telemetry.KafkaCommit)
	}
	a.window(s, now)
	s.evict(schemas.DayOf(now, a.cfg.Location) - 1)
	a.retainIDs(ctx, s.minDay, log)
	return nil
}

// retry calls f until it succeeds or ctx is done, backing off from 100ms to 5s.
func retry[T any](ctx context.Context, log *slog.Logger, what string, f func() (T, error)) (T, error) {
	backoff := 100 * time.Millisecond
	for {
		v, err := f()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		if errors.Is(err, errPositionMoved) || errors.Is(err, errTopicChanged) {
			return v, err // not to retry: the partition is opened again
		}
		log.Warn("aggregate: "+what+" failed; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

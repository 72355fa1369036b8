package aggregate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// Config configures an Aggregator. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	Brokers  []string              // Kafka bootstrap brokers (KAFKA_BROKERS); required
	Security schemas.KafkaSecurity // SASL and TLS towards the brokers; default plaintext
	Topic    string                // events topic; default im.usage.events
	DLQTopic string                // dead-letter topic; default im.usage.dlq
	Group    string                // consumer group id; default immeter-aggregate
	Location *time.Location        // billing time zone (BILLING_TZ); default +08:00

	// FlushInterval bounds how long folded events wait before they are
	// written to ClickHouse (and so the event-to-visible latency).
	FlushInterval time.Duration // default 1s
	// MaxPending forces a flush when this many rows wait; it bounds memory.
	MaxPending int // default 100000

	// MaxPast and MaxFuture bound event times against the clock: an event
	// older than MaxPast days before today, or later than MaxFuture from now,
	// goes to the dead-letter topic. MaxPast is also how far back event ids
	// are remembered for deduplication.
	MaxPast   time.Duration // default 62 days: the open month and the one before
	MaxFuture time.Duration // default 10 minutes

	// SessionTimeout is how long the group waits for a silent member (a
	// killed process) before giving its partitions to others.
	SessionTimeout time.Duration // default 10s

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

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
		Now:            time.Now,
		Logger:         slog.Default(),
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.DLQTopic == "" {
		c.DLQTopic = d.DLQTopic
	}
	if c.Group == "" {
		c.Group = d.Group
	}
	if c.Location == nil {
		c.Location = d.Location
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.MaxPending == 0 {
		c.MaxPending = d.MaxPending
	}
	if c.MaxPast == 0 {
		c.MaxPast = d.MaxPast
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = d.MaxFuture
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: required")
	case c.FlushInterval < 0:
		return errors.New("FlushInterval: must be positive")
	case c.MaxPending < 0:
		return errors.New("MaxPending: must be positive")
	case c.SessionTimeout < 6*time.Second:
		return errors.New("SessionTimeout: at least 6s (the broker's group.min.session.timeout.ms)")
	case c.MaxPast < 0 || c.MaxFuture < 0:
		return errors.New("MaxPast, MaxFuture: must be positive")
	case c.Topic == c.DLQTopic && c.Topic != "":
		return errors.New("DLQ_TOPIC: must differ from EVENTS_TOPIC")
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

	mu    sync.Mutex
	opens int // partitions opened, to name their sketch writers
}

// Stats counts what an Aggregator did since it started.
type Stats struct {
	Counted, Replayed, Duplicates, Rejected, Flushes uint64
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
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		Transport:    tr,
		BatchTimeout: 5 * time.Millisecond,
	}
	return &Aggregator{
		cfg:  cfg,
		conn: conn,
		dlq:  dlq,
		store: &store{conn: conn, group: cfg.Group, topic: cfg.Topic, dlq: dlq, writer: hex.EncodeToString(id[:]),
			inserts: make(chan struct{}, maxSetInserts)},
	}, nil
}

// dlqTransport is the transport of the DLQ writer, which carries the
// Kafka security settings.
func (a *Aggregator) dlqTransport() *kafka.Transport { return a.dlq.Transport.(*kafka.Transport) }

// Stats returns a snapshot of the counters.
func (a *Aggregator) Stats() Stats {
	return Stats{
		Counted:    atomic.LoadUint64(&a.stats.Counted),
		Replayed:   atomic.LoadUint64(&a.stats.Replayed),
		Duplicates: atomic.LoadUint64(&a.stats.Duplicates),
		Rejected:   atomic.LoadUint64(&a.stats.Rejected),
		Flushes:    atomic.LoadUint64(&a.stats.Flushes),
	}
}

// Run consumes until ctx is done, then flushes what it folded and returns.
func (a *Aggregator) Run(ctx context.Context) error {
	defer a.dlq.Close()
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
// it is flushed first).
func (a *Aggregator) consume(ctx, genCtx context.Context, gen *kafka.Generation, p kafka.PartitionAssignment) {
	log := a.cfg.Logger.With("partition", p.ID)
	work, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-genCtx.Done():
			cancel()
		case <-work.Done():
		}
	}()

	s, start, err := a.open(work, int32(p.ID))
	if err != nil {
		if work.Err() == nil {
			log.Error("aggregate: open partition", "err", err)
		}
		return
	}
	defer s.free()
	f := newFetcher(a.cfg.Brokers, a.dlqTransport(), a.cfg.Topic, p.ID, log)
	go f.run(work, start)
	log.Info("aggregate: consuming", "from", start)

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
	for {
		if rctx.Err() == nil && s.pending() < a.cfg.MaxPending {
			if cur == nil || i == cur.len() {
				if cur != nil {
					f.recycle(cur)
					cur = nil
				}
				select {
				case cur = <-f.batches:
					i = 0
				case <-rctx.Done():
				}
				continue
			}
			offset, key, value := cur.message(i)
			i++
			if err := a.apply(work, s, offset, key, value); err != nil {
				log.Error("aggregate: apply", "offset", offset, "err", err)
				return
			}
			continue
		}
		if genCtx.Err() != nil && ctx.Err() == nil {
			log.Info("aggregate: partition revoked; dropping unflushed state", "next", s.next)
			return
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
			return
		}
		nextWindow(started)
		if ctx.Err() != nil {
			log.Info("aggregate: stopped", "next", s.next)
			return
		}
	}
}

// open loads a partition's state and returns where to read from.
func (a *Aggregator) open(ctx context.Context, partition int32) (*partitionState, int64, error) {
	s := newPartitionState(partition, a.cfg.Location)
	s.clock, s.maxFuture = a.cfg.Now, a.cfg.MaxFuture
	a.mu.Lock()
	a.opens++
	s.writer = fmt.Sprintf("%s/p%d/o%d", a.store.writer, partition, a.opens)
	a.mu.Unlock()
	now := a.cfg.Now()
	a.window(s, now)
	s.load = func(k dayKey) (Counters, uint64, error) { return a.store.loadDay(ctx, partition, k) }
	next, err := retry(ctx, a.cfg.Logger, "read offsets", func() (int64, error) { return a.store.nextOffset(ctx, partition) })
	if err != nil {
		return nil, 0, err
	}
	recent := schemas.DayOf(now, a.cfg.Location) - 2
	if _, err := retry(ctx, a.cfg.Logger, "load state", func() (int, error) {
		clear(s.days)
		s.ids.Reset()
		clear(s.replay)
		s.loadedFrom = recent
		if err := a.store.loadDays(ctx, s, recent); err != nil {
			return 0, err
		}
		// Without a durable position every stored id may be read again.
		return 0, a.store.loadIDs(ctx, s, uint64(max(next, 0)))
	}); err != nil {
		return nil, 0, err
	}
	// ClickHouse, not Kafka, says what is durable: a partition it has no
	// position for is read from its first retained offset, whatever the
	// group committed on Kafka (a committed offset without a stored one
	// would skip events that were never aggregated).
	start := int64(kafka.FirstOffset)
	if next >= 0 {
		start = next
	}
	if start >= 0 {
		s.next = uint64(start)
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
	switch out {
	case Counted:
		atomic.AddUint64(&a.stats.Counted, 1)
	case Replayed:
		atomic.AddUint64(&a.stats.Replayed, 1)
	case Duplicate:
		atomic.AddUint64(&a.stats.Duplicates, 1)
	case Rejected:
		atomic.AddUint64(&a.stats.Rejected, 1)
	}
	return nil
}

// flush writes the state, retrying with backoff while ClickHouse or Kafka
// is unavailable; consumption waits meanwhile, so memory stays bounded.
func (a *Aggregator) flush(ctx context.Context, s *partitionState, gen *kafka.Generation, log *slog.Logger) error {
	now := a.cfg.Now()
	_, err := retry(ctx, log, "flush", func() (int, error) { return 0, a.store.flush(ctx, s, now) })
	if err != nil {
		return err
	}
	atomic.AddUint64(&a.stats.Flushes, 1)
	// Kafka's committed offset is informational (lag monitoring): the
	// durable position is in ClickHouse, written above.
	if err := gen.CommitOffsets(map[string]map[int]int64{a.cfg.Topic: {int(s.partition): int64(s.next)}}); err != nil {
		log.Debug("aggregate: commit offset", "err", err)
	}
	a.window(s, now)
	s.evict(schemas.DayOf(now, a.cfg.Location) - 1)
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
		log.Warn("aggregate: "+what+" failed; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// Errors the producer returns for conditions callers act on.
var (
	// ErrBufferFull is returned by Publish when BufferSize events are already
	// waiting for Kafka and Block is false: slow down or retry later.
	ErrBufferFull = errors.New("ingest: producer buffer full")
	// ErrClosed is returned for events offered after Close was called.
	ErrClosed = errors.New("ingest: producer closed")
	// ErrUndelivered wraps the error for events that were accepted but not
	// acknowledged by Kafka: Close gave up at its deadline, a PublishSync
	// caller stopped waiting, or the broker refused them for good. Whether
	// Kafka has them is unknown; publishing them again is safe because
	// consumers deduplicate by (app, id).
	ErrUndelivered = errors.New("ingest: not acknowledged by Kafka")
)

// ProducerConfig configures a Producer. Zero fields take the defaults of
// DefaultProducerConfig.
type ProducerConfig struct {
	// Brokers are the Kafka bootstrap addresses (host:port). Required.
	Brokers []string
	// Topic receives the events. Default schemas.EventsTopic.
	Topic string
	// Linger is how long a partition's batch waits for more events before it
	// is sent (the kafka-go writer's BatchTimeout). Default 5ms.
	Linger time.Duration
	// BatchSize is the most events in one produce request to a partition.
	// Default 1000.
	BatchSize int
	// BufferSize bounds the events accepted but not yet acknowledged by
	// Kafka. Default 10000.
	BufferSize int
	// Block makes Publish wait for room in a full buffer (until ctx is done)
	// instead of returning ErrBufferFull.
	Block bool
	// MaxInFlight is how many writes to Kafka run at once. Default 4.
	MaxInFlight int
	// WriteTimeout bounds one produce request. Default 10s.
	WriteTimeout time.Duration
	// OnError receives every event accepted by Publish that Kafka did not
	// acknowledge, with the reason (wrapping ErrUndelivered when Close gave
	// up on it). It runs on a producer goroutine and must not block for long.
	// Default: log the event's app and id at level error. (PublishSync
	// returns its errors to its caller instead.)
	OnError func(schemas.Event, error)
}

// DefaultProducerConfig returns the defaults; Brokers must still be set.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{
		Topic:        schemas.EventsTopic,
		Linger:       5 * time.Millisecond,
		BatchSize:    1000,
		BufferSize:   10000,
		MaxInFlight:  4,
		WriteTimeout: 10 * time.Second,
	}
}

func (c *ProducerConfig) setDefaults() {
	d := DefaultProducerConfig()
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.Linger == 0 {
		c.Linger = d.Linger
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.BufferSize == 0 {
		c.BufferSize = d.BufferSize
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
}

// Validate names the first bad field.
func (c ProducerConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("ingest: ProducerConfig.Brokers: required")
	case c.Topic == "":
		return errors.New("ingest: ProducerConfig.Topic: required")
	case c.Linger < 0:
		return fmt.Errorf("ingest: ProducerConfig.Linger: must be >= 0; got %s", c.Linger)
	case c.BatchSize < 1:
		return fmt.Errorf("ingest: ProducerConfig.BatchSize: must be >= 1; got %d", c.BatchSize)
	case c.BufferSize < 1:
		return fmt.Errorf("ingest: ProducerConfig.BufferSize: must be >= 1; got %d", c.BufferSize)
	case c.MaxInFlight < 1:
		return fmt.Errorf("ingest: ProducerConfig.MaxInFlight: must be >= 1; got %d", c.MaxInFlight)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("ingest: ProducerConfig.WriteTimeout: must be > 0; got %s", c.WriteTimeout)
	}
	return nil
}

// ProducerStats counts events since the producer started.
type ProducerStats struct {
	Accepted  int64 // taken into the buffer
	Delivered int64 // acknowledged by all in-sync replicas
	Failed    int64 // given up on (reported to OnError or the PublishSync caller)
	Pending   int64 // in the buffer or being written
	Retries   int64 // writes repeated after a retryable error
}

// Producer publishes usage events to Kafka. Publish buffers and returns at
// once; PublishSync waits for Kafka's acknowledgement. The message key is the
// app id in decimal, so all events of an app land on one partition (chosen by
// kafka-go's Hash balancer: FNV-1a of the key, as Sarama does); the value is
// the event's JSON. Events of one app keep their order except when a write is
// retried. A Producer is safe for concurrent use.
type Producer struct {
	cfg     ProducerConfig
	w       *kafka.Writer
	tr      *kafka.Transport
	sem     chan struct{} // one token per accepted event not yet settled
	queue   chan item     // accepted events waiting for a sender
	closing chan struct{} // closed by Close: no more intake
	done    chan struct{} // closed when all senders returned
	ctx     context.Context
	cancel  context.CancelFunc // second stage of Close

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool

	closeOnce   sync.Once
	writerOnce  sync.Once
	closeErr    error        // result of Close, set by writerOnce
	abandoned   atomic.Int64 // events given up because Close hit its deadline
	accepted    atomic.Int64
	delivered   atomic.Int64
	failed      atomic.Int64
	retries     atomic.Int64
	lastErr     atomic.Pointer[error] // most recent write error, nil after a success
	lastWriteOK atomic.Bool
}

// item is one accepted event: its Kafka message and, for PublishSync, where
// to report the outcome.
type item struct {
	msg kafka.Message
	w   *waiter
	i   int
}

// NewProducer checks cfg and starts a producer. It does not contact Kafka:
// use EnsureTopics first to fail fast on a wrong broker address.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.OnError == nil {
		cfg.OnError = func(e schemas.Event, err error) {
			slog.Error("ingest: event not delivered", "app", e.App, "id", e.ID, "type", e.Type, "err", err)
		}
	}
	tr := &kafka.Transport{ClientID: "immeter-ingest"}
	p := &Producer{
		cfg: cfg,
		tr:  tr,
		w: &kafka.Writer{
			Addr:            kafka.TCP(cfg.Brokers...),
			Topic:           cfg.Topic,
			Balancer:        &kafka.Hash{},
			RequiredAcks:    kafka.RequireAll,
			BatchTimeout:    cfg.Linger,
			BatchSize:       cfg.BatchSize,
			WriteTimeout:    cfg.WriteTimeout,
			MaxAttempts:     3, // the senders retry on top of this
			WriteBackoffMin: 50 * time.Millisecond,
			WriteBackoffMax: 500 * time.Millisecond,
			Transport:       tr,
		},
		sem:     make(chan struct{}, cfg.BufferSize),
		queue:   make(chan item, cfg.BufferSize),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.lastWriteOK.Store(true)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range cfg.MaxInFlight {
		wg.Go(p.send)
	}
	go func() { wg.Wait(); close(p.done) }()
	return p, nil
}

// Topic is the topic the producer writes to.
func (p *Producer) Topic() string { return p.cfg.Topic }

// Stats returns the producer's counters.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{
		Accepted:  p.accepted.Load(),
		Delivered: p.delivered.Load(),
		Failed:    p.failed.Load(),
		Pending:   int64(len(p.sem)),
		Retries:   p.retries.Load(),
	}
}

// Healthy returns nil while the producer is open and its most recent write
// to Kafka succeeded (or none was tried yet), else the reason.
func (p *Producer) Healthy() error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	if p.lastWriteOK.Load() {
		return nil
	}
	if e := p.lastErr.Load(); e != nil {
		return fmt.Errorf("kafka: %w", *e)
	}
	return nil
}

// Publish checks e against the event contract, gives it a new id when it has
// none, and buffers it for Kafka. It returns the contract violation (a
// *schemas.InvalidError), ErrBufferFull, ErrClosed or ctx's error; once it
// returned nil, the outcome of the delivery reaches OnError if it fails.
func (p *Producer) Publish(ctx context.Context, e schemas.Event) error {
	msg, err := p.message(&e, true)
	if err != nil {
		return err
	}
	return p.enqueue(ctx, item{msg: msg}, p.cfg.Block)
}

// PublishSync publishes events and waits until Kafka acknowledged each of
// them. errs[i] is nil when events[i] is stored in Kafka, a
// *schemas.InvalidError when it breaks the contract (it was not sent), or a
// delivery error wrapping ErrUndelivered. err is non-nil when some valid
// event was not acknowledged: ctx ended first, the producer is closed, or
// Kafka refused it. PublishSync waits for room in a full buffer regardless
// of Block.
func (p *Producer) PublishSync(ctx context.Context, events ...schemas.Event) (errs []error, err error) {
	errs = make([]error, len(events))
	msgs := make([]kafka.Message, len(events))
	ok := make([]bool, len(events))
	for i := range events {
		if msgs[i], errs[i] = p.message(&events[i], true); errs[i] == nil {
			ok[i] = true
		}
	}
	return errs, p.publishSync(ctx, msgs, ok, errs)
}

// publishSync sends msgs[i] where ok[i] and waits for the outcome, which it
// writes to errs[i].
func (p *Producer) publishSync(ctx context.Context, msgs []kafka.Message, ok []bool, errs []error) error {
	w := &waiter{errs: make([]error, len(msgs)), settled: make([]bool, len(msgs)), done: make(chan struct{})}
	for i := range msgs {
		if ok[i] {
			w.remaining++
		}
	}
	if w.remaining == 0 {
		return nil
	}
	var failure error
	for i := range msgs {
		if !ok[i] {
			continue
		}
		if failure == nil {
			failure = p.enqueue(ctx, item{msg: msgs[i], w: w, i: i}, true)
		}
		if failure != nil {
			w.settle(i, failure)
		}
	}
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	for i := range msgs {
		if !ok[i] {
			continue
		}
		err := w.errs[i]
		if !w.settled[i] {
			err = fmt.Errorf("%w: %w", ErrUndelivered, ctx.Err())
		}
		errs[i] = err
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// waiter collects the outcomes of a PublishSync call.
type waiter struct {
	mu        sync.Mutex
	errs      []error
	settled   []bool
	remaining int
	done      chan struct{}
}

func (w *waiter) settle(i int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.settled[i] {
		return
	}
	w.errs[i], w.settled[i] = err, true
	if w.remaining--; w.remaining == 0 {
		close(w.done)
	}
}

// message turns e into a Kafka message; with check, it gives e a new id when
// it has none and applies the contract (DecodeEvent on the very bytes that
// are sent, so the rules are the contract's own).
func (p *Producer) message(e *schemas.Event, check bool) (kafka.Message, error) {
	if check && e.ID == "" {
		e.ID = NewID()
	}
	value, err := e.MarshalJSON()
	if err != nil {
		return kafka.Message{}, err
	}
	if check {
		if _, err := schemas.DecodeEvent(value); err != nil {
			return kafka.Message{}, err
		}
	}
	return kafka.Message{
		Key:   strconv.AppendUint(make([]byte, 0, 10), uint64(e.App), 10),
		Value: value,
		Time:  time.Now(),
	}, nil
}

// enqueue takes a buffer slot for it and hands it to the senders.
func (p *Producer) enqueue(ctx context.Context, it item, block bool) error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	select {
	case p.sem <- struct{}{}:
	default:
		if !block {
			return ErrBufferFull
		}
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closing:
			return ErrClosed
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		<-p.sem
		return ErrClosed
	}
	p.queue <- it // never blocks: the queue holds as many items as sem has tokens
	p.accepted.Add(1)
	return nil
}

// send is one sender: it takes what is queued, up to BatchSize events, and
// writes it, until Close closed the queue and it is empty.
func (p *Producer) send() {
	batch := make([]item, 0, p.cfg.BatchSize)
	msgs := make([]kafka.Message, 0, p.cfg.BatchSize)
	for {
		it, ok := <-p.queue
		if !ok {
			return
		}
		batch = append(batch[:0], it)
	fill:
		for len(batch) < p.cfg.BatchSize {
			select {
			case it, ok := <-p.queue:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		msgs = p.deliver(batch, msgs[:0])
	}
}

// deliver writes batch until every event is acknowledged, refused for good,
// or Close's second stage cancels the producer; it settles each event.
// msgs is scratch space, returned for reuse.
func (p *Producer) deliver(batch []item, msgs []kafka.Message) []kafka.Message {
	pending := batch
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if err := p.ctx.Err(); err != nil {
			p.abandoned.Add(int64(len(pending)))
			cause := fmt.Errorf("%w: Close gave up", ErrUndelivered)
			if last := p.lastErr.Load(); last != nil && !p.lastWriteOK.Load() {
				cause = fmt.Errorf("%w: Close gave up; last error: %w", ErrUndelivered, *last)
			}
			for _, it := range pending {
				p.settle(it, cause)
			}
			return msgs
		}
		if attempt > 0 {
			p.retries.Add(int64(len(pending)))
		}
		msgs = msgs[:0]
		for _, it := range pending {
			msgs = append(msgs, it.msg)
		}
		err := p.w.WriteMessages(p.ctx, msgs...)
		if err == nil {
			p.lastWriteOK.Store(true)
			for _, it := range pending {
				p.settle(it, nil)
			}
			return msgs
		}
		if p.ctx.Err() != nil {
			continue // abandoned above
		}
		err = summarize(err)
		p.lastErr.Store(&err)
		p.lastWriteOK.Store(false)
		var werrs kafka.WriteErrors
		perMessage := errors.As(err, &werrs) && len(werrs) == len(pending)
		retry := pending[:0:0]
		for i, it := range pending {
			e := err
			if perMessage {
				e = werrs[i]
			}
			switch {
			case e == nil:
				p.settle(it, nil)
			case retryable(e):
				retry = append(retry, it)
			default:
				p.settle(it, fmt.Errorf("%w: %w", ErrUndelivered, e))
			}
		}
		if len(retry) == 0 {
			return msgs
		}
		pending = retry
		if attempt == 0 || backoff == maxBackoff && attempt%10 == 0 {
			slog.Warn("ingest: kafka write failed; retrying", "events", len(pending), "attempt", attempt+1, "err", err)
		}
		select {
		case <-time.After(backoff):
		case <-p.ctx.Done():
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// maxBackoff is the longest pause between two writes of a failed batch.
const maxBackoff = 2 * time.Second

// summarize shortens kafka.WriteErrors, which repeats one error per message,
// to the count and the first distinct error; other errors pass unchanged.
func summarize(err error) error {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) {
		return err
	}
	for _, e := range werrs {
		if e != nil {
			return &writeErrors{werrs: werrs, first: e}
		}
	}
	return err
}

// writeErrors is kafka.WriteErrors that prints short.
type writeErrors struct {
	werrs kafka.WriteErrors
	first error
}

func (w *writeErrors) Error() string {
	return fmt.Sprintf("%d of %d messages failed: %v", w.werrs.Count(), len(w.werrs), w.first)
}

func (w *writeErrors) Unwrap() []error { return []error{w.werrs, w.first} }

// retryable says whether writing again may succeed: Kafka's temporary errors
// and everything that is not a Kafka error (network, timeouts).
func retryable(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var tooLarge kafka.MessageTooLargeError
	return !errors.As(err, &tooLarge)
}

// settle records the outcome of one event and frees its buffer slot.
func (p *Producer) settle(it item, err error) {
	if err == nil {
		p.delivered.Add(1)
	} else {
		p.failed.Add(1)
	}
	if it.w != nil {
		it.w.settle(it.i, err)
	} else if err != nil {
		e, derr := schemas.DecodeEvent(it.msg.Value)
		if derr != nil { // cannot happen: the value was checked on the way in
			e = schemas.Event{App: 0, ID: string(it.msg.Value)}
		}
		p.cfg.OnError(e, err)
	}
	<-p.sem
}

// Close stops intake (Publish returns ErrClosed from now on) and flushes
// every accepted event to Kafka. When ctx ends first, it cancels the writes
// still running, reports each event left to OnError (or its PublishSync
// caller) and returns an error wrapping ErrUndelivered with their number.
// Later calls wait for the first one's flush and return the same.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.closing)
		close(p.queue)
		p.mu.Unlock()
	})
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
	p.writerOnce.Do(func() {
		if p.ctx.Err() == nil {
			p.w.Close() // nothing left to flush; returns at once
			p.tr.CloseIdleConnections()
		} else {
			// The writer may still retry batches whose callers were
			// cancelled; let it finish in the background.
			go func() { p.w.Close(); p.tr.CloseIdleConnections() }()
		}
		p.cancel()
		if n := p.abandoned.Load(); n > 0 {
			cause := ctx.Err()
			if last := p.lastErr.Load(); last != nil && !p.lastWriteOK.Load() {
				cause = *last
			}
			p.closeErr = fmt.Errorf("%w: %d events left at close (last error: %w)", ErrUndelivered, n, cause)
		}
	})
	return p.closeErr
}

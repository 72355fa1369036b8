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
	"github.com/immeter/immeter/telemetry"
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
	// WriteTimeout bounds one produce request. Default 10s.
	WriteTimeout time.Duration
	// OnError receives every event accepted by Publish that Kafka did not
	// acknowledge, with the reason (wrapping ErrUndelivered when Close gave
	// up on it). It runs on a producer goroutine and must not block for long
	// nor call Close (which waits for every report to return).
	// Default: log the event's app and id at level error. (PublishSync
	// returns its errors to its caller instead.)
	OnError func(schemas.Event, error)
	// Security is SASL and TLS towards the brokers. Default: plaintext.
	Security schemas.KafkaSecurity
}

// DefaultProducerConfig returns the defaults; Brokers must still be set.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{
		Topic:        schemas.EventsTopic,
		Linger:       5 * time.Millisecond,
		BatchSize:    1000,
		BufferSize:   10000,
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
// app id in decimal, so all events of an app land on one partition, chosen
// as the Java client's default partitioner does for a keyed record:
// murmur2(key) & 0x7fffffff modulo the partition count (kafka-go's
// Murmur2Balancer; librdkafka and kcat need partitioner=murmur2_random for
// the same); the value is the event's JSON. Events go to Kafka in the order they were accepted and
// are pipelined: a partition's next batches fill while its current one waits
// for the acknowledgement. Events of one app keep their order except when a
// write is retried. A Producer is safe for concurrent use.
type Producer struct {
	cfg     ProducerConfig
	w       *kafka.Writer
	tr      *kafka.Transport
	sem     chan struct{} // one token per accepted event not yet settled
	queue   chan item     // accepted events waiting for the sender
	closing chan struct{} // closed by Close: no more intake
	drained chan struct{} // closed when Close was called and every accepted event is settled
	done    chan struct{} // closed when the sender and the retrier returned
	ctx     context.Context
	cancel  context.CancelFunc // second stage of Close

	mu        sync.RWMutex // guards closed against sends on queue
	closed    bool
	closedNow atomic.Bool  // closed, for settle
	unsettled atomic.Int64 // accepted events not yet settled
	drainOnce sync.Once

	flightMu sync.Mutex
	inFlight map[*chunk]struct{} // chunks with events not yet settled

	// settling is held shared by every settle while it records an outcome
	// and reports it; Close takes it once exclusively before returning, so
	// that no report of an event is still on its way when Close returns.
	settling sync.RWMutex

	retryMu   sync.Mutex
	retryList []*pending    // events to write again after a pause
	retryWake chan struct{} // a token when retryList got events

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

// pending is an item handed to the Kafka writer, which carries a pointer to
// it in the message's WriterData to its Completion.
type pending struct {
	item
	settled atomic.Bool
	chunk   *chunk
}

// chunk is what the sender took from the queue at once: its events stay in
// Producer.inFlight until all are settled, so Close can find those left.
type chunk struct {
	items []pending
	left  atomic.Int64
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
	tr, err := cfg.Security.Transport("immeter-ingest")
	if err != nil {
		return nil, err
	}
	p := &Producer{
		cfg:       cfg,
		tr:        tr,
		sem:       make(chan struct{}, cfg.BufferSize),
		queue:     make(chan item, cfg.BufferSize),
		closing:   make(chan struct{}),
		drained:   make(chan struct{}),
		done:      make(chan struct{}),
		inFlight:  map[*chunk]struct{}{},
		retryWake: make(chan struct{}, 1),
	}
	p.w = &kafka.Writer{
		Addr:            kafka.TCP(cfg.Brokers...),
		Topic:           cfg.Topic,
		Balancer:        &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks:    kafka.RequireAll,
		BatchTimeout:    cfg.Linger,
		BatchSize:       cfg.BatchSize,
		WriteTimeout:    cfg.WriteTimeout,
		MaxAttempts:     3, // the producer retries on top of this
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		Transport:       tr,
		// WriteMessages returns once the events are in the writer's batches;
		// each batch's outcome comes to completed.
		Async:      true,
		Completion: p.completed,
	}
	p.lastWriteOK.Store(true)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(p.send)
	wg.Go(p.retry)
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
	if check {
		if err := e.CheckText(); err != nil {
			return kafka.Message{}, err
		}
	}
	// Key and value share one allocation (a long event moves both to a
	// larger one).
	b := strconv.AppendUint(make([]byte, 0, 208), uint64(e.App), 10)
	n := len(b)
	b = e.AppendJSON(b)
	key, value := b[:n:n], b[n:]
	if check {
		if _, err := schemas.DecodeEvent(value); err != nil {
			return kafka.Message{}, err
		}
	}
	return kafka.Message{Key: key, Value: value, Time: time.Now()}, nil
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
	p.unsettled.Add(1)
	p.queue <- it // never blocks: the queue holds as many items as sem has tokens
	p.accepted.Add(1)
	return nil
}

// send takes what is queued, up to BatchSize events at a time, and hands it
// to the Kafka writer without waiting for the outcome, until Close closed the
// queue and it is empty.
func (p *Producer) send() {
	var (
		ptrs []*pending
		msgs []kafka.Message
	)
	for {
		it, ok := <-p.queue
		if !ok {
			return
		}
		c := &chunk{items: make([]pending, 1, min(p.cfg.BatchSize, 1+len(p.queue)))}
		c.items[0].item = it
	fill:
		for len(c.items) < cap(c.items) {
			select {
			case it, ok := <-p.queue:
				if !ok {
					break fill
				}
				c.items = append(c.items, pending{item: it})
			default:
				break fill
			}
		}
		c.left.Store(int64(len(c.items)))
		ptrs = ptrs[:0]
		for i := range c.items {
			c.items[i].chunk = c
			ptrs = append(ptrs, &c.items[i])
		}
		p.flightMu.Lock()
		p.inFlight[c] = struct{}{}
		p.flightMu.Unlock()
		msgs = p.write(ptrs, msgs)
	}
}

// write hands events to the Kafka writer, which reports their outcome to
// completed; when the writer refuses them at once, write settles them or
// schedules them for a retry itself. msgs is scratch space, returned for
// reuse.
func (p *Producer) write(events []*pending, msgs []kafka.Message) []kafka.Message {
	if p.ctx.Err() != nil {
		p.abandon(events)
		return msgs
	}
	msgs = msgs[:0]
	for _, pd := range events {
		m := pd.msg
		m.WriterData = pd
		msgs = append(msgs, m)
	}
	// An error here (no metadata for the topic, a message too large, the
	// writer closed) means none of msgs was taken.
	if err := p.w.WriteMessages(p.ctx, msgs...); err != nil {
		p.writeFailed(events, err)
	}
	clear(msgs) // drop the references to the events for the collector
	return msgs
}

// completed is the writer's Completion: it settles the events of one batch,
// or schedules them for a retry.
func (p *Producer) completed(msgs []kafka.Message, err error) {
	if err == nil {
		p.lastWriteOK.Store(true)
		for i := range msgs {
			p.settle(msgs[i].WriterData.(*pending), nil)
		}
		return
	}
	events := make([]*pending, len(msgs))
	for i := range msgs {
		events[i] = msgs[i].WriterData.(*pending)
	}
	p.writeFailed(events, err)
}

// writeFailed handles a write of events that failed with err: it settles them
// when err is final, else schedules them for a retry.
func (p *Producer) writeFailed(events []*pending, err error) {
	err = summarize(err)
	telemetry.KafkaError(telemetry.KafkaProduce)
	p.lastErr.Store(&err)
	wasOK := p.lastWriteOK.Swap(false)
	if !retryable(err) {
		for _, pd := range events {
			p.settle(pd, fmt.Errorf("%w: %w", ErrUndelivered, err))
		}
		return
	}
	if wasOK {
		slog.Warn("ingest: kafka write failed; retrying", "events", len(events), "err", err)
	}
	p.retryMu.Lock()
	p.retryList = append(p.retryList, events...)
	p.retryMu.Unlock()
	select {
	case p.retryWake <- struct{}{}:
	default:
	}
}

// retry writes again, after a pause, the events of failed writes, until
// Close's second stage cancels the producer. The pause grows from 100 ms to
// maxBackoff while no write succeeds.
func (p *Producer) retry() {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	var msgs []kafka.Message
	for round := 0; ; round++ {
		select {
		case <-p.retryWake:
		case <-p.ctx.Done():
			return
		}
		if p.lastWriteOK.Load() {
			backoff, round = minBackoff, 0
		}
		select {
		case <-time.After(backoff):
		case <-p.ctx.Done():
			return // Close settles what is left
		}
		p.retryMu.Lock()
		events := p.retryList
		p.retryList = nil
		p.retryMu.Unlock()
		if backoff == maxBackoff && round%10 == 0 {
			if last := p.lastErr.Load(); last != nil {
				slog.Warn("ingest: kafka write still failing; retrying", "events", len(events), "round", round+1, "err", *last)
			}
		}
		p.retries.Add(int64(len(events)))
		msgs = p.write(events, msgs)
		backoff = min(2*backoff, maxBackoff)
	}
}

// abandon settles events that Close gave up on.
func (p *Producer) abandon(events []*pending) {
	cause := fmt.Errorf("%w: Close gave up", ErrUndelivered)
	if last := p.lastErr.Load(); last != nil && !p.lastWriteOK.Load() {
		cause = fmt.Errorf("%w: Close gave up; last error: %w", ErrUndelivered, *last)
	}
	for _, pd := range events {
		if p.settle(pd, cause) {
			p.abandoned.Add(1)
		}
	}
}

// abandonInFlight settles every event handed to the writer and not yet
// settled.
func (p *Producer) abandonInFlight() {
	p.flightMu.Lock()
	var events []*pending
	for c := range p.inFlight {
		for i := range c.items {
			events = append(events, &c.items[i])
		}
	}
	p.flightMu.Unlock()
	p.abandon(events)
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

// settle records the outcome of one event and frees its buffer slot, unless
// the event was settled already (a late outcome of an event Close gave up
// on); it says whether it did.
func (p *Producer) settle(pd *pending, err error) bool {
	p.settling.RLock()
	defer p.settling.RUnlock()
	if !pd.settled.CompareAndSwap(false, true) {
		return false
	}
	if err == nil {
		p.delivered.Add(1)
	} else {
		p.failed.Add(1)
	}
	if c := pd.chunk; c.left.Add(-1) == 0 {
		p.flightMu.Lock()
		delete(p.inFlight, c)
		p.flightMu.Unlock()
	}
	// The slot is free before the outcome is told: a PublishSync caller
	// that publishes again as soon as it returns finds room for it.
	<-p.sem
	if pd.w != nil {
		pd.w.settle(pd.i, err)
	} else if err != nil {
		e, derr := schemas.DecodeEvent(pd.msg.Value)
		if derr != nil { // cannot happen: the value was checked on the way in
			e = schemas.Event{App: 0, ID: string(pd.msg.Value)}
		}
		p.cfg.OnError(e, err)
	}
	if p.unsettled.Add(-1) == 0 && p.closedNow.Load() {
		p.drainOnce.Do(func() { close(p.drained) })
	}
	return true
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
		p.closedNow.Store(true)
		close(p.closing)
		close(p.queue)
		p.mu.Unlock()
		if p.unsettled.Load() == 0 {
			p.drainOnce.Do(func() { close(p.drained) })
		}
	})
	select {
	case <-p.drained:
	case <-ctx.Done():
	}
	p.cancel() // stops the retrier; with events left, the sender abandons the queued ones
	<-p.done
	p.writerOnce.Do(func() {
		p.abandonInFlight()
		if p.abandoned.Load() == 0 {
			p.w.Close() // nothing left to flush; returns at once
			p.tr.CloseIdleConnections()
		} else {
			// The writer may still retry batches Close gave up on; let it
			// finish in the background (their late outcomes are ignored).
			go func() { p.w.Close(); p.tr.CloseIdleConnections() }()
		}
		if n := p.abandoned.Load(); n > 0 {
			cause := ctx.Err()
			if last := p.lastErr.Load(); last != nil && !p.lastWriteOK.Load() {
				cause = *last
			}
			p.closeErr = fmt.Errorf("%w: %d events left at close (last error: %w)", ErrUndelivered, n, cause)
		}
		// A writer's outcome settled just before abandonInFlight may still
		// be reporting: wait for it, so that every report precedes Close's
		// return.
		p.settling.Lock()
		//lint:ignore SA2001 an empty critical section is the barrier meant
		p.settling.Unlock()
	})
	return p.closeErr
}

package ingest

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

var at = time.Date(2026, 11, 25, 21, 0, 0, 0, time.FixedZone("CST", 8*3600))

func TestProducerConfigValidate(t *testing.T) {
	// f checks Validate's error, and that NewProducer refuses too (unless
	// the zero value is one NewProducer fills with the default).
	f := func(tune func(*ProducerConfig), want string) {
		t.Helper()
		cfg := DefaultProducerConfig()
		cfg.Brokers = []string{"127.0.0.1:9092"}
		tune(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
		if _, err := NewProducer(cfg); err == nil && cfg.Topic != "" {
			t.Fatalf("NewProducer accepted a config Validate refuses")
		}
	}
	f(func(c *ProducerConfig) { c.Brokers = nil }, "ProducerConfig.Brokers: required")
	f(func(c *ProducerConfig) { c.Topic = "" }, "ProducerConfig.Topic: required")
	f(func(c *ProducerConfig) { c.Linger = -1 }, "ProducerConfig.Linger")
	f(func(c *ProducerConfig) { c.BatchSize = -1 }, "ProducerConfig.BatchSize")
	f(func(c *ProducerConfig) { c.BufferSize = -5 }, "ProducerConfig.BufferSize")
	f(func(c *ProducerConfig) { c.WriteTimeout = -time.Second }, "ProducerConfig.WriteTimeout")

	// Zero fields take the defaults.
	p, err := NewProducer(ProducerConfig{Brokers: []string{closedAddr(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.Topic != schemas.EventsTopic || p.cfg.Linger != 5*time.Millisecond || p.cfg.BufferSize != 10000 {
		t.Fatalf("unexpected defaults: %+v", p.cfg)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConstructorsValid(t *testing.T) {
	login := NewLogin(1400000001, "u1", at)
	login.Platform = "ios"
	for _, e := range []schemas.Event{
		login,
		NewMessage(1400000001, "u1", "c2c", 3, at),
		NewGroupCreate(1400000001, "g1", "Work", at),
		NewGroupDissolve(1400000001, "g1", "Work", at),
		NewCall(1400000001, "u1", "video", 61, at),
		NewPlan(1400000001, "standard", at),
	} {
		if err := e.Validate(); err != nil {
			t.Fatalf("constructor made an invalid %s event: %v", e.Type, err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(e.ID) {
			t.Fatalf("unexpected id %q; want 32 hex digits", e.ID)
		}
	}
	if a, b := NewID(), NewID(); a == b {
		t.Fatalf("NewID repeats: %s", a)
	}
}

func TestPublishRefusesInvalid(t *testing.T) {
	k := newFakeKafka(t)
	topic := k.topic(t)
	p := k.producer(t, topic, nil)
	f := func(e schemas.Event, field string) {
		t.Helper()
		err := p.Publish(context.Background(), e)
		var ie *schemas.InvalidError
		if !errors.As(err, &ie) || ie.Field != field {
			t.Fatalf("unexpected error; got %v; want an InvalidError on %q", err, field)
		}
		_, err = p.PublishSync(context.Background(), e)
		if err != nil {
			t.Fatalf("PublishSync of only invalid events: unexpected call error %v", err)
		}
	}
	f(NewLogin(1, "", at), "user")
	f(NewLogin(0, "u", at), "app")
	f(NewMessage(1, "u", "sms", 1, at), "channel")
	f(NewMessage(1, "u", "c2c", -1, at), "count")
	f(NewGroupCreate(1, "", "Work", at), "group")
	f(NewGroupCreate(1, "g", "work", at), "group_type")
	f(NewCall(1, "u", "fax", 1, at), "media")
	f(NewCall(1, "u", "audio", -1, at), "seconds")
	f(NewPlan(1, "gold", at), "edition")
	f(schemas.Event{ID: strings.Repeat("x", 129), Type: schemas.Plan, App: 1, Time: at, Edition: "premium"}, "id")
	f(schemas.Event{Type: "logout", App: 1, Time: at}, "type")
	// Invalid UTF-8 would be encoded as U+FFFD: "inv-\xff" and "inv-\xfe"
	// would reach the topic as one id.
	f(schemas.Event{ID: "inv-\xff", Type: schemas.Plan, App: 1, Time: at, Edition: "premium"}, "id")
	f(schemas.Event{ID: "inv-\xfe", Type: schemas.Plan, App: 1, Time: at, Edition: "premium"}, "id")
	f(NewLogin(1, "u\xc3", at), "user")
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := k.count(t, topic); n != 0 {
		t.Fatalf("unexpected records on the topic; got %d; want 0", n)
	}
}

func TestPublishKeyValueAndID(t *testing.T) {
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		p := k.producer(t, topic, nil)
		e := NewMessage(1400000007, "u1", "group", 2, at)
		e.ID = "" // the producer makes one
		if err := p.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs := k.read(t, topic)
		if len(recs) != 1 {
			t.Fatalf("unexpected record count; got %d; want 1", len(recs))
		}
		if string(recs[0].Key) != "1400000007" {
			t.Fatalf("unexpected key; got %q; want the app id in decimal", recs[0].Key)
		}
		got, err := schemas.DecodeEvent(recs[0].Value)
		if err != nil {
			t.Fatalf("value %s: %v", recs[0].Value, err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got.ID) {
			t.Fatalf("unexpected generated id %q", got.ID)
		}
		if !got.Time.Equal(at) || got.User != "u1" || got.Count != 2 || got.Channel != "group" || got.App != 1400000007 {
			t.Fatalf("unexpected event on the topic: %+v", got)
		}
	})
}

// TestCloseFlushesEverything publishes N events as fast as the buffer takes
// them, closes, and finds exactly N distinct ids on the topic.
func TestCloseFlushesEverything(t *testing.T) {
	const n = 10000
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		var failures atomic.Int64
		p := k.producer(t, topic, func(c *ProducerConfig) {
			c.Block = true
			c.BufferSize = 2000 // smaller than n: Publish has to wait for Kafka
			c.OnError = func(schemas.Event, error) { failures.Add(1) }
		})
		var wg sync.WaitGroup
		for w := range 4 { // several publishers, as in a server
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					e := NewMessage(1400000001+uint32(i%7), "u"+strconv.Itoa(i%100), "c2c", 1, at)
					e.ID = "flush-" + strconv.Itoa(i)
					if err := p.Publish(context.Background(), e); err != nil {
						t.Errorf("publish %d: %v", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if st := p.Stats(); st.Accepted != n || st.Delivered != n || st.Pending != 0 || failures.Load() != 0 {
			t.Fatalf("unexpected stats %+v, %d failures; want %d accepted and delivered", st, failures.Load(), n)
		}
		ids := map[string]bool{}
		for _, r := range k.read(t, topic) {
			e, err := schemas.DecodeEvent(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			if string(r.Key) != strconv.FormatUint(uint64(e.App), 10) {
				t.Fatalf("unexpected key %q for app %d", r.Key, e.App)
			}
			if ids[e.ID] {
				t.Fatalf("duplicate id %s on the topic", e.ID)
			}
			ids[e.ID] = true
		}
		if len(ids) != n {
			t.Fatalf("unexpected distinct ids on the topic; got %d; want %d", len(ids), n)
		}
		if err := p.Publish(context.Background(), NewPlan(1, "premium", at)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Publish after Close; got %v; want ErrClosed", err)
		}
	})
}

// TestPublishKeepsOrderPerApp publishes numbered events of a few apps from
// one goroutine through a small buffer and small batches, so many batches
// are in flight at once, and finds each app's events on the topic in the
// order they were published.
func TestPublishKeepsOrderPerApp(t *testing.T) {
	const n, apps = 6000, 5
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		p := k.producer(t, topic, func(c *ProducerConfig) {
			c.Block = true
			c.BufferSize = 1500
			c.BatchSize = 100
		})
		for i := range n {
			e := NewMessage(1400000001+uint32(i%apps), "u1", "c2c", 1, at)
			e.ID = "order-" + strconv.Itoa(i)
			if err := p.Publish(context.Background(), e); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if st := p.Stats(); st.Delivered != n || st.Retries != 0 {
			t.Fatalf("unexpected stats %+v; want %d delivered without retries", st, n)
		}
		last := map[uint32]int{}
		for _, r := range k.read(t, topic) {
			e, err := schemas.DecodeEvent(r.Value)
			if err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			i, err := strconv.Atoi(strings.TrimPrefix(e.ID, "order-"))
			if err != nil {
				t.Fatalf("unexpected id %q", e.ID)
			}
			if prev, ok := last[e.App]; ok && i != prev+apps {
				t.Fatalf("app %d: event %d follows event %d on the topic; want %d", e.App, i, prev, prev+apps)
			}
			if _, ok := last[e.App]; !ok && i >= apps {
				t.Fatalf("app %d: first event on the topic is %d", e.App, i)
			}
			last[e.App] = i
		}
		if len(last) != apps {
			t.Fatalf("unexpected apps on the topic; got %d; want %d", len(last), apps)
		}
		for app, i := range last {
			if i < n-apps {
				t.Fatalf("app %d: last event on the topic is %d; want one of the last %d", app, i, apps)
			}
		}
	})
}

// TestBackPressure points a producer at a port nothing listens on: the
// buffer fills, Publish says ErrBufferFull (or blocks until ctx ends with
// Block), and Close with a short deadline reports every event it could not
// deliver, to OnError and in its error.
func TestBackPressure(t *testing.T) {
	const buffer = 50
	var (
		mu       sync.Mutex
		reported []string
	)
	cfg := DefaultProducerConfig()
	cfg.Brokers = []string{closedAddr(t)}
	cfg.BufferSize = buffer
	cfg.OnError = func(e schemas.Event, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(err, ErrUndelivered) {
			t.Errorf("OnError: unexpected error %v; want ErrUndelivered", err)
		}
		reported = append(reported, e.ID)
	}
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := range buffer * 3 {
		e := NewLogin(1400000001, "u"+strconv.Itoa(i), at)
		err := p.Publish(context.Background(), e)
		if errors.Is(err, ErrBufferFull) {
			break
		}
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		accepted++
	}
	if accepted != buffer {
		t.Fatalf("unexpected events accepted before ErrBufferFull; got %d; want %d", accepted, buffer)
	}
	if st := p.Stats(); st.Pending != buffer {
		t.Fatalf("unexpected pending count; got %d; want %d", st.Pending, buffer)
	}

	// With Block, the same full buffer holds Publish until ctx ends.
	p.cfg.Block = true
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = p.Publish(ctx, NewLogin(1400000001, "late", at))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocking Publish on a full buffer; got %v; want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = p.Close(ctx)
	if !errors.Is(err, ErrUndelivered) || !strings.Contains(err.Error(), strconv.Itoa(buffer)+" events") {
		t.Fatalf("unexpected Close error %v; want ErrUndelivered with the count %d", err, buffer)
	}
	if !strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Close error %q does not say why Kafka failed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != buffer {
		t.Fatalf("unexpected OnError calls; got %d; want %d", len(reported), buffer)
	}
	if st := p.Stats(); st.Failed != buffer || st.Pending != 0 || st.Delivered != 0 {
		t.Fatalf("unexpected stats after Close: %+v", st)
	}
	if err := p.Publish(context.Background(), NewLogin(1, "u", at)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close; got %v; want ErrClosed", err)
	}
}

// TestBrokerGoesAway stops the fake broker under a working producer: what
// was acknowledged stays acknowledged, what was not is reported.
func TestBrokerGoesAway(t *testing.T) {
	k := newFakeKafka(t)
	topic := k.topic(t)
	var failed atomic.Int64
	p := k.producer(t, topic, func(c *ProducerConfig) {
		c.BufferSize = 20
		c.OnError = func(schemas.Event, error) { failed.Add(1) }
	})
	errs, err := p.PublishSync(context.Background(), NewLogin(1400000001, "before", at))
	if err != nil || errs[0] != nil {
		t.Fatalf("PublishSync with the broker up: %v %v", err, errs)
	}
	if p.Healthy() != nil {
		t.Fatalf("unexpected unhealthy producer: %v", p.Healthy())
	}
	k.fake.Close()
	full := false
	for i := range 100 {
		err := p.Publish(context.Background(), NewLogin(1400000001, "after"+strconv.Itoa(i), at))
		if errors.Is(err, ErrBufferFull) {
			full = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatalf("buffer of 20 never filled with the broker gone")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	errs, err = p.PublishSync(ctx, NewLogin(1400000001, "sync", at))
	if !errors.Is(err, ErrUndelivered) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PublishSync with the broker gone; got %v; want a delivery error", err)
	}
	if errs[0] == nil {
		t.Fatalf("PublishSync with the broker gone: no per-event error")
	}
	for deadline := time.Now().Add(5 * time.Second); p.Healthy() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("producer says healthy with the broker gone")
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, ErrUndelivered) {
		t.Fatalf("unexpected Close error %v; want ErrUndelivered", err)
	}
	if st := p.Stats(); failed.Load() != 20 || st.Delivered != 1 || st.Failed != 20 {
		t.Fatalf("unexpected outcome: stats %+v, %d reported to OnError; want 1 delivered, 20 failed and reported", st, failed.Load())
	}
}

func TestPublishSync(t *testing.T) {
	onBrokers(t, func(t *testing.T, k *testKafka) {
		topic := k.topic(t)
		p := k.producer(t, topic, nil)
		events := []schemas.Event{
			NewLogin(1400000001, "u1", at),
			NewLogin(1400000001, "", at), // invalid
			NewCall(1400000002, "u2", "audio", 30, at),
			{Type: schemas.Plan, App: 1400000003, Time: at, Edition: "premium"}, // gets an id
		}
		errs, err := p.PublishSync(context.Background(), events...)
		if err != nil {
			t.Fatalf("PublishSync: %v", err)
		}
		var ie *schemas.InvalidError
		if errs[0] != nil || !errors.As(errs[1], &ie) || ie.Field != "user" || errs[2] != nil || errs[3] != nil {
			t.Fatalf("unexpected per-event errors %v", errs)
		}
		// Acknowledged means readable now, before Close.
		if n := k.count(t, topic); n != 3 {
			t.Fatalf("unexpected records after PublishSync; got %d; want 3", n)
		}
	})
}

func TestEnsureTopics(t *testing.T) {
	onBrokers(t, func(t *testing.T, k *testKafka) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, b := "immeter-test-ensure-a-"+NewID()[:8], "immeter-test-ensure-b-"+NewID()[:8]
		if err := EnsureTopics(ctx, k.brokers, 2, 1, a, b); err != nil {
			t.Fatal(err)
		}
		if err := EnsureTopics(ctx, k.brokers, 2, 1, a, b); err != nil {
			t.Fatalf("second EnsureTopics on existing topics: %v", err)
		}
		if n := k.count(t, a); n != 0 {
			t.Fatalf("unexpected records in a new topic: %d", n)
		}
		if k.fake == nil {
			testenv.DeleteTopicsAtEnd(t, k.brokers, a, b)
		}
	})
	f := func(brokers []string, partitions, replication int, want string) {
		t.Helper()
		err := EnsureTopics(context.Background(), brokers, partitions, replication, "t")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(nil, 1, 1, "no brokers")
	f([]string{"127.0.0.1:1"}, 0, 1, "partitions must be >= 1")
	f([]string{"127.0.0.1:1"}, 1, 0, "replication must be >= 1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, []string{closedAddr(t)}, 1, 1, "t"); err == nil {
		t.Fatalf("EnsureTopics succeeded without a broker")
	}
}

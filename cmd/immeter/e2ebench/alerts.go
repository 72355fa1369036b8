package e2ebench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// alertProbeApp0 is the first app of the alert probes, outside the load's
// apps and the latency probe's.
const alertProbeApp0 = 4000001000

// alertProbeUsers is how many users each alert probe app has before its
// probe: one short of 80% of the Developer edition's 100 free MAU.
const alertProbeUsers = 79

// prepareAlertProbes gives each of n Developer apps 79 users, so that one
// more login (the probe) crosses 80% of its free MAU.
func (e *env) prepareAlertProbes(ctx context.Context, n int) error {
	w := e.writer()
	defer w.Close()
	now := time.Now()
	var msgs []kafka.Message
	for k := range n {
		app := uint32(alertProbeApp0 + k)
		for u := range alertProbeUsers {
			msgs = append(msgs, loginMsg(app, fmt.Sprintf("alert-probe-%d-%d", k, u), now))
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("alert probes: %w", err)
	}
	return nil
}

func (e *env) writer() *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(e.cfg.Brokers...),
		Topic:        e.events,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    1000,
		Transport:    &kafka.Transport{},
	}
}

func loginMsg(app uint32, user string, at time.Time) kafka.Message {
	key := strconv.FormatUint(uint64(app), 10)
	v := fmt.Sprintf(`{"id":"%s","type":"login","app":%d,"time":"%s","user":"%s"}`, user, app, at.Format(time.RFC3339Nano), user)
	return kafka.Message{Key: []byte(key), Value: []byte(v)}
}

// startAlerter runs the alerter (rollup.Alerter, default settings but
// AlertInterval) on the bench's database and alerts topic until ctx is done.
func (e *env) startAlerter(ctx context.Context) (stop func(), err error) {
	cfg := rollup.DefaultAlertConfig()
	if e.cfg.AlertInterval > 0 {
		cfg.Interval = e.cfg.AlertInterval
	}
	cfg.Brokers, cfg.Topic, cfg.Logger = e.cfg.Brokers, e.alerts, e.log
	a, err := rollup.NewAlerter(cfg, e.conn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			e.log.Warn("bench: alerter", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		a.Close()
	}, nil
}

// alertProber sends the probes of prepareAlertProbes, one every interval,
// and reads the alerts topic for their mau_quota alerts at 80%.
type alertProber struct {
	mu   sync.Mutex
	sent []time.Time // by probe
	seen map[int]time.Duration
	done chan struct{}
}

func (e *env) startAlertProbes(ctx context.Context, n int, every time.Duration) *alertProber {
	p := &alertProber{seen: map[int]time.Duration{}, done: make(chan struct{})}
	readCtx, stopRead := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for part := range e.cfg.Partitions {
		readers.Go(func() {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.cfg.Brokers, Topic: e.alerts, Partition: part, MaxWait: 20 * time.Millisecond})
			defer r.Close()
			for {
				m, err := r.ReadMessage(readCtx)
				if err != nil {
					return
				}
				at := time.Now()
				var a schemas.Alert
				if json.Unmarshal(m.Value, &a) != nil || a.Kind != schemas.AlertMAUQuota || a.Level != 80 {
					continue
				}
				k := int(a.App) - alertProbeApp0
				p.mu.Lock()
				if k >= 0 && k < len(p.sent) {
					if _, dup := p.seen[k]; !dup {
						p.seen[k] = at.Sub(p.sent[k])
					}
				}
				p.mu.Unlock()
			}
		})
	}
	go func() {
		defer close(p.done)
		w := e.writer()
		defer w.Close()
		t := time.NewTicker(every)
		defer t.Stop()
	send:
		for k := 0; k < n; k++ {
			select {
			case <-ctx.Done():
				break send
			case <-t.C:
			}
			now := time.Now()
			p.mu.Lock()
			p.sent = append(p.sent, now)
			p.mu.Unlock()
			msg := loginMsg(uint32(alertProbeApp0+k), fmt.Sprintf("alert-probe-%d-%d", k, alertProbeUsers), now)
			if err := w.WriteMessages(context.Background(), msg); err != nil {
				e.log.Warn("bench: alert probe", "err", err)
				break
			}
		}
		// Wait for the alerts of the probes sent, 30 s at most.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			p.mu.Lock()
			all := len(p.seen) == len(p.sent)
			p.mu.Unlock()
			if all {
				break
			}
		}
		stopRead()
		readers.Wait()
	}()
	return p
}

// wait returns the sorted latencies of the alerts seen and the number of
// probes sent.
func (p *alertProber) wait() ([]time.Duration, int) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	var lat []time.Duration
	for _, d := range p.seen {
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat, len(p.sent)
}

package e2ebench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/internal/simulate"
)

// sustainFigures is what a phase under load did.
type sustainFigures struct {
	offered    float64       // the rate asked for
	produced   int64         // events acknowledged by Kafka in the phase
	elapsed    time.Duration // of the load
	aggregated int64         // events made durable while the load ran
	maxLag     int64         // largest backlog seen, in events
	endLag     int64         // backlog when the load stopped
	catchUp    time.Duration // from then until the backlog was durable
	cpu        time.Duration // aggregator CPU time during the load
	latencies  []time.Duration
	probes     int
}

// sustain offers perSec events a second for d while the aggregator runs,
// and with probeEvery > 0 measures event-to-visible latency with probes.
func (e *env) sustain(ctx context.Context, gen *simulate.Stream, agg *aggProc, perSec float64, d, probeEvery time.Duration) (sustainFigures, error) {
	f := sustainFigures{offered: perSec}
	before, err := e.aggregated(ctx)
	if err != nil {
		return f, err
	}
	endBefore, err := e.endOffsets(ctx)
	if err != nil {
		return f, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	// Backlog, every second.
	wg.Go(func() {
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-time.After(time.Second):
			}
			end, err1 := e.endOffsets(loadCtx)
			got, err2 := e.aggregated(loadCtx)
			if err1 == nil && err2 == nil {
				f.maxLag = max(f.maxLag, sum(end)-sum(got))
			}
		}
	})
	var pr *prober
	if probeEvery > 0 {
		pr = e.startProbes(loadCtx, probeEvery)
	}
	start, cpu0 := time.Now(), agg.cpu()
	if e.cfg.Simulate {
		err = e.simulate(ctx, perSec, d, int(start.Unix()))
	} else {
		_, err = e.produce(ctx, gen, 0, perSec, start.Add(d))
	}
	f.elapsed, f.cpu = time.Since(start), agg.cpu()-cpu0
	if err != nil && ctx.Err() == nil {
		return f, err
	}
	mid, err := e.aggregated(ctx)
	if err != nil {
		return f, err
	}
	endAfter, err := e.endOffsets(ctx)
	if err != nil {
		return f, err
	}
	f.produced = sum(endAfter) - sum(endBefore)
	f.aggregated = sum(mid) - sum(before)
	f.endLag = sum(endAfter) - sum(mid)
	loadEnd := time.Now()
	stopLoad() // probes are sent only while the load runs
	wg.Wait()
	if _, err := e.waitAggregated(ctx, endAfter, agg, 10*time.Minute); err != nil {
		return f, err
	}
	f.catchUp = time.Since(loadEnd)
	if pr != nil {
		f.latencies, f.probes = pr.wait()
	}
	return f, nil
}

// prober publishes probe events of an app outside the load, a login of a
// new user each, and watches ClickHouse for the day's login count of that
// app: probe k is visible once the count passes k.
type prober struct {
	mu   sync.Mutex
	sent []time.Time
	seen []time.Duration
	done chan struct{}
	err  error
}

func (e *env) startProbes(ctx context.Context, every time.Duration) *prober {
	p := &prober{done: make(chan struct{})}
	app := uint32(4000000000)
	w := &kafka.Writer{
		Addr:         kafka.TCP(e.cfg.Brokers...),
		Topic:        e.events,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, // not kafka-go's 1 s default
		Transport:    &kafka.Transport{},
	}
	key := []byte(strconv.FormatUint(uint64(app), 10))
	go func() {
		defer w.Close()
		t := time.NewTicker(every)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := time.Now()
			v := fmt.Sprintf(`{"id":"probe-%d","type":"login","app":%d,"time":"%s","user":"probe-%d"}`,
				k, app, now.Format(time.RFC3339Nano), k)
			p.mu.Lock()
			p.sent = append(p.sent, now)
			p.mu.Unlock()
			if err := w.WriteMessages(context.Background(), kafka.Message{Key: key, Value: []byte(v)}); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return
			}
		}
	}()
	go func() {
		defer close(p.done)
		stopped := time.Now()
		for {
			var n uint64
			err := e.conn.QueryRow(context.Background(), sqlAppLogins, app).Scan(&n)
			now := time.Now()
			p.mu.Lock()
			if err == nil {
				for len(p.seen) < int(n) && len(p.seen) < len(p.sent) {
					p.seen = append(p.seen, now.Sub(p.sent[len(p.seen)]))
				}
			}
			all := len(p.seen) == len(p.sent)
			p.mu.Unlock()
			if ctx.Err() != nil && (all || time.Since(stopped) > 30*time.Second) {
				return
			}
			if ctx.Err() == nil {
				stopped = time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

// wait returns the latencies of the probes, once all are visible (or 30 s
// after the load stopped), and how many were sent.
func (p *prober) wait() ([]time.Duration, int) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	lat := slices.Clone(p.seen)
	slices.Sort(lat)
	return lat, len(p.sent)
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

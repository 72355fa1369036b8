package e2ebench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/simulate"
	"github.com/immeter/immeter/schemas"
)

// The storage phase (Config.Months): months of traffic, the aggregator's
// clock moving with it, then raw events against immeter's tables.

// sqlIDDaysKept counts the days event_ids holds (its partitions).
const sqlIDDaysKept = `SELECT uniqExact(partition), min(partition), max(partition) FROM system.parts
	WHERE database = ? AND table = 'event_ids' AND active`

// storageFigures are the storage phase's results.
type storageFigures struct {
	days, perDay         int
	maxPast              time.Duration
	first, last          schemas.Day
	events               int64
	produce, aggregate   time.Duration
	counted, duplicates  uint64
	rejected             uint64
	idDays               uint64
	idFirst, idLast      string
	peer                 *peerFigures // sizes of raw_events and of immeter's tables
	loadStart, loadAfter string
}

// storage runs the storage phase: cfg.Months of cfg.EventsPerDay events a
// day, stamped evenly over each day from the first day of a month on, and
// an aggregator in this process whose clock is the end of the day being
// written: its accepted window, and so the days of event_ids it keeps,
// move on as the days pass. Then the peers' raw_events get the same
// stream, and every table is merged and measured.
func (e *env) storage(ctx context.Context) (*storageFigures, error) {
	cfg := e.cfg
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
	end := start.AddDate(0, cfg.Months, 0)
	f := &storageFigures{perDay: cfg.EventsPerDay, maxPast: cfg.MaxEventAge, loadStart: loadavg(),
		days: int(end.Sub(start) / (24 * time.Hour)), first: schemas.DayOf(start, loc), last: schemas.DayOf(end, loc) - 1}
	step := 24 * time.Hour / time.Duration(cfg.EventsPerDay)
	gen, err := simulate.New(simulate.Config{
		Apps: cfg.Apps, Users: cfg.Users, NewUsers: 1, Seed: 1, Duplicates: 0.001,
		Time: func(n uint64) time.Time { return start.Add(time.Duration(n) * step) },
	})
	if err != nil {
		return nil, err
	}

	var clock atomic.Int64
	clock.Store(start.UnixNano())
	acfg := aggregate.DefaultConfig()
	acfg.Brokers, acfg.Topic, acfg.DLQTopic, acfg.Group = cfg.Brokers, e.events, e.dlq, e.group
	acfg.Location = loc
	acfg.MaxPast = cfg.MaxEventAge
	acfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	logf, err := os.Create(e.dir + "/aggregate-storage.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	acfg.Logger = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	agg, err := aggregate.New(acfg, e.conn)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agg.Run(runCtx) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()

	// A day at a time: the clock at the day's end, its events, then wait
	// until they are durable (and the window has moved on). Days written
	// as they happen, as in production: a day older than the clock's
	// yesterday would be loaded from ClickHouse app by app.
	for day := 0; day < f.days; day++ {
		dayEnd := start.AddDate(0, 0, day+1)
		clock.Store(dayEnd.UnixNano())
		t0 := time.Now()
		sent, err := e.produce(ctx, gen, int64(cfg.EventsPerDay), 0, time.Time{})
		if err != nil {
			return nil, err
		}
		f.events += sent
		f.produce += time.Since(t0)
		t0 = time.Now()
		if err := e.waitStored(ctx, 10*time.Minute); err != nil {
			return nil, err
		}
		f.aggregate += time.Since(t0)
		if day%7 == 6 || day == f.days-1 {
			e.log.Info("bench: storage", "through", dayEnd.AddDate(0, 0, -1).Format(time.DateOnly), "events", f.events)
		}
	}
	// A flush at the last clock has dropped what the last week let go.
	time.Sleep(3 * acfg.FlushInterval)
	stop()
	stopped = true
	if err := <-done; err != nil {
		return nil, err
	}
	st := agg.Stats()
	f.counted, f.duplicates, f.rejected = st.Counted, st.Duplicates, st.Rejected
	if err := e.conn.QueryRow(ctx, sqlIDDaysKept, e.ch.Database).Scan(&f.idDays, &f.idFirst, &f.idLast); err != nil {
		return nil, err
	}
	e.log.Info("bench: storage: raw events (peers' design)")
	p, err := e.peer(ctx)
	if err != nil {
		return nil, err
	}
	f.peer = p
	f.loadAfter = loadavg()
	return f, nil
}

// waitStored waits until ClickHouse holds every event now in the topic as
// aggregated.
func (e *env) waitStored(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	end, err := e.endOffsets(ctx)
	if err != nil {
		return err
	}
	for {
		got, err := e.aggregated(ctx)
		if err == nil {
			left := 0
			for p, want := range end {
				if got[p] < want {
					left++
				}
			}
			if left == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: not aggregated in %s: %v of %v", timeout, got, end)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeStorage reports the storage phase.
func (f *storageFigures) write(w io.Writer, cfg Config) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	host, _ := os.Hostname()
	p("immeter storage after %d months, %s", cfg.Months, time.Now().UTC().Format(time.RFC3339))
	p("machine: %s, %d CPUs; load average at start %s, at end %s", host, runtime.NumCPU(), f.loadStart, f.loadAfter)
	p("load: %d days (%s to %s) of %d events a day, %d apps and %d users (Zipf 1.1), 0.1%% resent duplicates; MAX_EVENT_AGE %s",
		f.days, f.first, f.last, f.perDay, cfg.Apps, cfg.Users, f.maxPast)
	p("aggregated %d events in %s (produced in %s): %d counted, %d duplicates, %d rejected",
		f.events, f.aggregate.Round(time.Second), f.produce.Round(time.Second), f.counted, f.duplicates, f.rejected)
	p("event_ids holds %d days (%s to %s)", f.idDays, f.idFirst, f.idLast)
	if f.peer == nil {
		return
	}
	pr := f.peer
	p("raw events (peers' design): %d rows, %.1f MiB (%.1f bytes an event)", pr.rawRows, float64(pr.rawBytes)/(1<<20), float64(pr.rawBytes)/float64(max(pr.rawRows, 1)))
	var parts []string
	for _, t := range pr.ourTables {
		parts = append(parts, fmt.Sprintf("%s %d rows %.2f MiB", t.name, t.rows, float64(t.bytes)/(1<<20)))
	}
	p("immeter: %d rows, %.1f MiB: %s", pr.ourRows, float64(pr.ourBytes)/(1<<20), strings.Join(parts, ", "))
	if pr.ourBytes > 0 {
		p("raw / immeter storage: %.1fx", float64(pr.rawBytes)/float64(pr.ourBytes))
	}
}

package e2ebench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// report collects the figures of a run.
type report struct {
	cfg      Config
	started  time.Time
	database string
	topic    string
	logs     string

	preload      phaseFigures
	preloadUsers int
	drain        phaseFigures
	drainRSS     rssFigures
	sustain      *sustainFigures
	latency      *sustainFigures
	// alertLatencies are from an alert probe's event to its alert on the
	// alerts topic, sorted; alertProbes is how many were sent.
	alertLatencies []time.Duration
	alertProbes    int
	finalRSS       rssFigures
	peer           *peerFigures
	close          *closeFigures
	month          *monthFigures
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	host, _ := os.Hostname()
	p("immeter end-to-end benchmark, %s", r.started.UTC().Format(time.RFC3339))
	p("machine: %s, %d CPUs, %s/%s; load average at start %s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, loadavg())
	p("services: Kafka %s, ClickHouse %s (database %s), topic %s with %d partitions; logs in %s",
		strings.Join(r.cfg.Brokers, ","), r.cfg.ClickHouse.Addr, r.database, r.topic, r.cfg.Partitions, r.logs)
	p("load: %d apps (Zipf 1.1), users Zipf 1.1 per app; 60%% messages, 35%% logins, 5%% other; 0.1%% resent duplicates", r.cfg.Apps)
	if len(r.cfg.AggregateEnv) > 0 {
		p("aggregator environment: %s", strings.Join(r.cfg.AggregateEnv, " "))
	}
	p("")
	p("preload: %d events (%d distinct users, nearly all logged in) produced in %s: %.0f events/s",
		r.preload.events, r.preloadUsers, r.preload.elapsed.Round(time.Millisecond), rate(r.preload.events, r.preload.elapsed))
	if r.drain.elapsed > 0 {
		p("drain:   immeter aggregate made %d events durable in ClickHouse in %s: %.0f events/s "+
			"(%.0f events per aggregator CPU-second; first flush %s after start)",
			r.drain.events, r.drain.elapsed.Round(time.Millisecond), rate(r.drain.events, r.drain.elapsed),
			rate(r.drain.events, r.drain.cpu), r.drain.startup.Round(time.Millisecond))
		p("memory:  aggregator peak RSS %s after the preload (%d apps, %d distinct users, %d event ids)",
			mib(r.drainRSS.peak), r.cfg.Apps, r.preloadUsers, r.preload.events)
	}
	for _, s := range []struct {
		name string
		f    *sustainFigures
	}{{"sustained", r.sustain}, {"latency", r.latency}} {
		f := s.f
		if f == nil {
			continue
		}
		src := "in-process generator"
		if r.cfg.Simulate {
			src = "immeter simulate"
		}
		p("%s: offered %.0f events/s for %s (%s): Kafka took %.0f events/s; aggregated %.0f events/s meanwhile "+
			"(%.0f per aggregator CPU-second); backlog max %d, at the end %d, durable %s later",
			s.name, f.offered, f.elapsed.Round(time.Second), src, rate(f.produced, f.elapsed), rate(f.aggregated, f.elapsed),
			rate(f.aggregated, f.cpu), f.maxLag, f.endLag, f.catchUp.Round(time.Millisecond))
		if f.probes > 0 {
			p("latency: event to visible in ClickHouse (daily_usage), %d of %d probes: p50 %s, p95 %s, p99 %s, max %s",
				len(f.latencies), f.probes, percentile(f.latencies, 0.50).Round(time.Millisecond),
				percentile(f.latencies, 0.95).Round(time.Millisecond), percentile(f.latencies, 0.99).Round(time.Millisecond),
				percentile(f.latencies, 1).Round(time.Millisecond))
		}
	}
	if r.alertProbes > 0 {
		l := r.alertLatencies
		interval := "default ALERT_INTERVAL"
		if r.cfg.AlertInterval > 0 {
			interval = "ALERT_INTERVAL " + r.cfg.AlertInterval.String()
		}
		p("alerts:  event to alert on the topic (a login crossing 80%% of a Developer app's free MAU; rollup.Alerter, %s), %d of %d probes: p50 %s, p95 %s, p99 %s, max %s",
			interval, len(l), r.alertProbes, percentile(l, 0.50).Round(time.Millisecond), percentile(l, 0.95).Round(time.Millisecond),
			percentile(l, 0.99).Round(time.Millisecond), percentile(l, 1).Round(time.Millisecond))
	}
	if r.finalRSS.peak > 0 {
		p("memory:  aggregator peak RSS over the run %s", mib(r.finalRSS.peak))
	}
	if f := r.peer; f != nil {
		p("")
		p("peers' design (raw events, uniqExact/count() at month end) on the same %d events (stored in %s):", f.events, f.loadTime.Round(time.Millisecond))
		p("  storage after OPTIMIZE FINAL: raw_events %s (%d rows) vs immeter %s (%d rows): raw/immeter = %.1fx",
			mib(f.rawBytes), f.rawRows, mib(f.ourBytes), f.ourRows, float64(f.rawBytes)/float64(max(1, f.ourBytes)))
		for _, t := range f.ourTables {
			p("    %-18s %12d rows %10s", t.name, t.rows, mib(t.bytes))
		}
		p("  month-close queries (median of 3): raw %s for %d apps vs immeter (rollup.ReadMonth) %s for %d apps: raw/immeter = %.1fx; exact MAU equal: %v",
			f.rawQuery.Round(time.Millisecond), f.rawApps, f.ourQuery.Round(time.Millisecond), f.ourApps,
			float64(f.rawQuery)/float64(max(1, f.ourQuery)), f.mauMatches)
	}
	if c := r.close; c != nil {
		p("month close: final rollup (rollup.Publish, ForceFinalOpen) of %d apps: %s (%d final records stored and published)",
			c.apps, c.elapsed.Round(time.Millisecond), c.final)
	}
	if m := r.month; m != nil {
		p("")
		p("month close of a synthetic month (previous month, written in %s): %d apps active every day, %d users (exact MAU total %d), "+
			"%d user_days rows, %d daily_usage rows, %d sketches:", m.fill.Round(time.Second), m.apps, m.users, m.mauTotal,
			m.userDays, m.dailyRows, m.sketchRows)
		p("  rollup.ReadMonth %s; final rollup (rollup.Publish, ForceFinal: read, price, store, publish) %s for %d final records",
			m.readMonth.Round(time.Millisecond), m.publish.Round(time.Millisecond), m.final)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

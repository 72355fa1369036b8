package e2ebench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
)

// endOffsets returns the next offset of every partition of the events topic.
func (e *env) endOffsets(ctx context.Context) (map[int]int64, error) {
	return ingest.EndOffsets(ctx, e.cfg.Brokers, e.events)
}

func sum(m map[int]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// aggregated returns, per partition, the offset ClickHouse says the
// aggregator has made durable.
func (e *env) aggregated(ctx context.Context) (map[int]int64, error) {
	return aggregate.Progress(ctx, e.conn, e.group, e.events)
}

// phaseFigures is what a phase did.
type phaseFigures struct {
	events  int64
	elapsed time.Duration
	startup time.Duration // until the first flush, for a drain
	cpu     time.Duration // aggregator CPU time in the phase
}

// waitAggregated waits until the aggregator made the end offsets durable.
// The rate counts from the first progress seen, so the group join and the
// first flush interval do not count.
func (e *env) waitAggregated(ctx context.Context, end map[int]int64, agg *aggProc, timeout time.Duration) (phaseFigures, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	first, err := e.aggregated(ctx)
	if err != nil {
		return phaseFigures{}, err
	}
	firstSum, firstAt, cpu0 := sum(first), time.Time{}, agg.cpu()
	target := sum(end)
	for {
		got, err := e.aggregated(ctx)
		if err == nil {
			n := int64(0)
			for p, want := range end {
				n += min(got[p], want)
			}
			if firstAt.IsZero() && n > firstSum {
				firstAt, firstSum, cpu0 = time.Now(), n, agg.cpu()
			}
			if n >= target {
				if firstAt.IsZero() { // nothing to do
					return phaseFigures{}, nil
				}
				return phaseFigures{events: n - firstSum, elapsed: time.Since(firstAt), startup: firstAt.Sub(began), cpu: agg.cpu() - cpu0}, nil
			}
		}
		if err := agg.alive(); err != nil {
			return phaseFigures{}, err
		}
		select {
		case <-ctx.Done():
			return phaseFigures{}, fmt.Errorf("aggregated %d of %d events before the timeout", sum(got), target)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// aggProc is `immeter aggregate` running as a child process.
type aggProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error

	mu      sync.Mutex
	peakRSS int64
	lastRSS int64
	stopped bool
}

func (e *env) startAggregate(ctx context.Context) (*aggProc, error) {
	log, err := os.Create(filepath.Join(e.dir, "aggregate.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.cfg.Binary, "aggregate")
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+joinBrokers(e.cfg.Brokers),
		"KAFKA_PARTITIONS="+strconv.Itoa(e.cfg.Partitions),
		"KAFKA_REPLICATION="+strconv.Itoa(e.cfg.Replication),
		"CLICKHOUSE_ADDR="+e.ch.Addr,
		"CLICKHOUSE_CLUSTER="+e.ch.Cluster,
		"CLICKHOUSE_DATABASE="+e.ch.Database,
		"CLICKHOUSE_USER="+e.ch.Username,
		"CLICKHOUSE_PASSWORD="+e.ch.Password,
		"EVENTS_TOPIC="+e.events,
		"DLQ_TOPIC="+e.dlq,
		"AGGREGATE_GROUP="+e.group,
		"METRICS_ADDR=127.0.0.1:0",
	)
	cmd.Env = append(cmd.Env, e.cfg.AggregateEnv...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start immeter aggregate: %w", err)
	}
	p := &aggProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	go p.sample()
	return p, nil
}

// sample records the peak resident set size every 100ms.
func (p *aggProc) sample() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			if rss := procStatus(p.cmd.Process.Pid, "VmRSS:"); rss > 0 {
				p.mu.Lock()
				p.lastRSS, p.peakRSS = rss, max(p.peakRSS, rss)
				p.mu.Unlock()
			}
		}
	}
}

type rssFigures struct{ peak, last int64 }

func (p *aggProc) rss() rssFigures {
	if hwm := procStatus(p.cmd.Process.Pid, "VmHWM:"); hwm > 0 {
		p.mu.Lock()
		p.peakRSS = max(p.peakRSS, hwm)
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return rssFigures{peak: p.peakRSS, last: p.lastRSS}
}

// cpu returns the CPU time the process has used.
func (p *aggProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s) // f[0] is field 3 (state); utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func (p *aggProc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("immeter aggregate exited: %v (log %s)", p.err, p.log.Name())
	default:
		return nil
	}
}

// stop asks the aggregator to flush and exit, and kills it after 30 s.
func (p *aggProc) stop() error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
	return p.err
}

// procStatus returns a kB field of /proc/<pid>/status in bytes.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

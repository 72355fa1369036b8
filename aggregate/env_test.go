package aggregate_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// testPartitions is the partition count of the test topics.
const testPartitions = 4

// testEnv is a private corner of the real Kafka broker and a ClickHouse
// server: topics, a consumer group and a database of its own.
type testEnv struct {
	brokers     []string
	events, dlq string
	group       string
	ch          schemas.ClickHouseConfig
	conn        driver.Conn
}

// integration returns a fresh testEnv on the configured services.
func integration(t *testing.T) *testEnv {
	t.Helper()
	brokers, chAddr := testenv.Services(t)
	return newEnv(t, brokers, chAddr)
}

// newEnv makes topics and a consumer group on the brokers and a database on
// the ClickHouse server at chAddr, all removed when the test passes.
func newEnv(t *testing.T, brokers []string, chAddr string) *testEnv {
	t.Helper()
	return makeEnv(t, brokers, 1, schemas.ClickHouseConfig{Addr: chAddr, Username: "default"}, time.Minute)
}

// makeEnv is newEnv with topics of replication replicas and a database on
// the ClickHouse server or cluster of ch, made within timeout.
func makeEnv(t *testing.T, brokers []string, replication int, ch schemas.ClickHouseConfig, timeout time.Duration) *testEnv {
	t.Helper()
	n := testenv.NewNames()
	e := &testEnv{brokers: brokers, events: n.Events, dlq: n.DLQ, group: n.Group, ch: ch}
	e.ch.Database = n.Database
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, replication, e.events, e.dlq); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, e.brokers, e.events, e.dlq)
	e.conn = e.openDatabase(ctx, t)
	return e
}

// openDatabase opens (and migrates) the env's database, dropped at the end
// of the test if it passed.
func (e *testEnv) openDatabase(ctx context.Context, t *testing.T) driver.Conn {
	t.Helper()
	conn, err := schemas.OpenClickHouse(ctx, e.ch)
	if err != nil {
		t.Fatal(err)
	}
	testenv.DropDatabaseAtEnd(t, conn, e.ch.Addr, e.ch.Database, e.ch.Cluster)
	return conn
}

// twin returns an env on the same topics with a consumer group and a
// database of its own: a second pipeline over the same stream.
func (e *testEnv) twin(t *testing.T) *testEnv {
	t.Helper()
	n := testenv.NewNames()
	tw := *e
	tw.group, tw.ch.Database = n.Group, n.Database
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tw.conn = tw.openDatabase(ctx, t)
	return &tw
}

// produce writes msgs to topic (testenv.Produce), failing the test unless
// they are all written or ctx ended.
func (e *testEnv) produce(ctx context.Context, t *testing.T, topic string, msgs []kafka.Message) {
	t.Helper()
	if err := testenv.Produce(ctx, t, e.brokers, topic, msgs); err != nil && ctx.Err() == nil {
		t.Error(err)
	}
}

// produceSlowly writes msgs in chunks spread over about d, so that the
// aggregator consumes while the test does harm to it. It closes the
// returned channel when all are acknowledged.
func (e *testEnv) produceSlowly(ctx context.Context, t *testing.T, msgs []kafka.Message, chunks int, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		size := (len(msgs) + chunks - 1) / chunks
		for i := 0; i < len(msgs); i += size {
			e.produce(ctx, t, e.events, msgs[i:min(i+size, len(msgs))])
			select {
			case <-ctx.Done():
				return
			case <-time.After(d / time.Duration(chunks)):
			}
		}
	}()
	return done
}

// endOffsets returns the next offset of every partition of topic.
func (e *testEnv) endOffsets(ctx context.Context, t *testing.T, topic string) map[int]int64 {
	t.Helper()
	return testenv.EndOffsets(ctx, t, e.brokers, topic)
}

// readAll reads every message now in topic, each partition in offset order.
func (e *testEnv) readAll(ctx context.Context, t *testing.T, topic string) []kafka.Message {
	t.Helper()
	return testenv.ReadAll(ctx, t, e.brokers, topic)
}

// aggregated reports how many messages of the events topic ClickHouse says
// are aggregated, per partition (the stored next offsets).
func (e *testEnv) aggregated(ctx context.Context) (map[int]int64, error) {
	return aggregate.Progress(ctx, e.conn, e.group, e.events)
}

// waitAggregated waits until ClickHouse says every message of the events
// topic now on the broker has been aggregated.
func (e *testEnv) waitAggregated(ctx context.Context, t *testing.T) {
	t.Helper()
	testenv.WaitProgress(ctx, t, e.endOffsets(ctx, t, e.events), e.aggregated)
}

// resetKafkaOffsets commits offsets for the env's group on Kafka, as an
// operator resetting the group would. Kafka accepts it only from outside
// the group when the group is empty, so it retries until the members of a
// killed process have timed out.
func (e *testEnv) resetKafkaOffsets(ctx context.Context, t *testing.T, offsets map[int]int64) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	var commits []kafka.OffsetCommit
	for p, o := range offsets {
		commits = append(commits, kafka.OffsetCommit{Partition: p, Offset: o})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: e.group, GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{e.events: commits}})
		if err == nil {
			for _, p := range res.Topics[e.events] {
				if p.Error != nil {
					err = p.Error
				}
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit offsets %v for group %s on Kafka: %v", offsets, e.group, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// chProxy forwards ClickHouse connections and can stop all traffic, and run
// a function, at the moment a client sends given statements in order: it
// places a crash at a chosen point of a flush.
type chProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]bool
	pattern [][]byte // statements still to see, in order
	fire    func()
	frozen  bool
}

func newCHProxy(t *testing.T, target string) *chProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.reset() })
	return p
}

func (p *chProxy) addr() string { return p.ln.Addr().String() }

// arm makes the proxy call fire, and drop all traffic from then on, when
// the statements are seen in order (each a prefix such as "INSERT INTO t").
func (p *chProxy) arm(fire func(), statements ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern = nil
	for _, s := range statements {
		p.pattern = append(p.pattern, []byte(s))
	}
	p.fire = fire
}

// reset disarms the proxy, closes its connections and lets traffic through.
func (p *chProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.pattern, p.fire, p.frozen = nil, nil, false
}

func (p *chProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(c, s); c.Close() }()
		go p.upstream(c, s)
	}
}

// upstream forwards what the client sends, watching for the armed statements.
func (p *chProxy) upstream(c, s net.Conn) {
	defer s.Close()
	defer c.Close()
	buf := make([]byte, 64<<10)
	var tail []byte // the end of the previous read, for matches across reads
	for {
		n, err := c.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			p.mu.Lock()
			for len(p.pattern) > 0 && bytes.Contains(seen, p.pattern[0]) {
				i := bytes.Index(seen, p.pattern[0])
				seen = seen[i+len(p.pattern[0]):]
				p.pattern = p.pattern[1:]
				if len(p.pattern) == 0 {
					p.frozen = true
					p.fire()
				}
			}
			frozen := p.frozen
			p.mu.Unlock()
			if frozen {
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
			tail = append(tail[:0], buf[max(0, n-64):n]...)
		}
		if err != nil {
			return
		}
	}
}

// immeter builds the immeter command into dir.
func buildImmeter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "immeter")
	c := exec.Command("go", "build", "-o", bin, "./cmd/immeter")
	c.Dir = ".."
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/immeter: %v\n%s", err, out)
	}
	return bin
}

// aggProc is an `immeter aggregate` process.
type aggProc struct {
	cmd       *exec.Cmd
	consuming chan struct{} // closed when it consumes a partition
	exited    chan struct{} // closed when it exited
}

// startAggregate runs `immeter aggregate` on the env's topics and group,
// writing through chAddr; its log goes to logw.
func (e *testEnv) startAggregate(t *testing.T, bin, chAddr string, logw io.Writer, extraEnv ...string) *aggProc {
	t.Helper()
	c := exec.Command(bin, "aggregate")
	c.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(e.brokers, ","),
		"KAFKA_PARTITIONS="+strconv.Itoa(testPartitions),
		"CLICKHOUSE_ADDR="+chAddr,
		"CLICKHOUSE_DATABASE="+e.ch.Database,
		"EVENTS_TOPIC="+e.events,
		"DLQ_TOPIC="+e.dlq,
		"AGGREGATE_GROUP="+e.group,
		"AGGREGATE_SESSION_TIMEOUT=6s",
		"MAX_EVENT_AGE=2400h",
		"LOG_LEVEL=info",
		"METRICS_ADDR=127.0.0.1:0", // tests run several at once
	)
	c.Env = append(c.Env, extraEnv...)
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &aggProc{cmd: c, consuming: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		var once sync.Once
		buf := make([]byte, 0, 4096)
		r := make([]byte, 4096)
		for {
			n, err := stderr.Read(r)
			_, _ = logw.Write(r[:n])
			buf = append(buf, r[:n]...)
			if bytes.Contains(buf, []byte("aggregate: consuming")) {
				once.Do(func() { close(p.consuming) })
			}
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
				buf = append(buf[:0], buf[i+1:]...)
			}
			if err != nil {
				break
			}
		}
		_ = c.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *aggProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop asks the process to stop (SIGTERM: flush and leave the group) and
// waits for it.
func (p *aggProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Errorf("immeter aggregate did not stop in 30s after SIGINT")
		p.kill()
	}
}

// maxPast accepts the whole generated stream (two calendar months).
const maxPast = 100 * 24 * time.Hour

// runAggregator runs an in-process Aggregator on the env's topics and group
// until the returned stop is called; its log goes to the test log if the
// test fails.
func (e *testEnv) runAggregator(ctx context.Context, t *testing.T, name string, cfg aggregate.Config, conn driver.Conn) (*aggregate.Aggregator, func()) {
	t.Helper()
	log := &syncWriter{}
	// The test sets FlushInterval, MaxPending, Now and StuckRecheck when it cares; the rest is
	// the defaults, with the env's topics and group.
	d := aggregate.DefaultConfig()
	if cfg.FlushInterval != 0 {
		d.FlushInterval = cfg.FlushInterval
	}
	if cfg.MaxPending != 0 {
		d.MaxPending = cfg.MaxPending
	}
	if cfg.Now != nil {
		d.Now = cfg.Now
	}
	if cfg.StuckRecheck != 0 {
		d.StuckRecheck = cfg.StuckRecheck
	}
	cfg = d
	cfg.Brokers, cfg.Topic, cfg.DLQTopic, cfg.Group = e.brokers, e.events, e.dlq, e.group
	cfg.MaxPast = maxPast
	cfg.SessionTimeout = 6 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	agg, err := aggregate.New(cfg, conn)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agg.Run(runCtx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("aggregator %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("log of aggregator %s (tail):\n%s", name, log.tail(40))
		}
	})
	return agg, stop
}

// syncWriter is a log for the output of concurrent writers.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// tail returns the last n lines.
func (w *syncWriter) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.Split(strings.TrimRight(w.b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

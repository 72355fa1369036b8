package aggregate_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

// services returns the configured broker list and ClickHouse address, or
// skips the test when they are not configured. With IMMETER_INTEGRATION=1
// (make test) missing services fail the test instead.
func services(t *testing.T) (brokerList, chAddr string) {
	t.Helper()
	brokerList, chAddr = os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokerList == "" || chAddr == "" {
		if os.Getenv("IMMETER_INTEGRATION") == "1" {
			t.Fatal("IMMETER_INTEGRATION=1 but KAFKA_BROKERS or CLICKHOUSE_ADDR is unset")
		}
		t.Skip("integration test: set KAFKA_BROKERS and CLICKHOUSE_ADDR (make test starts both)")
	}
	return brokerList, chAddr
}

// integration returns a fresh testEnv on the configured services.
func integration(t *testing.T) *testEnv {
	t.Helper()
	brokerList, chAddr := services(t)
	return newEnv(t, brokerList, chAddr)
}

// newEnv makes topics and a consumer group on the brokers and a database on
// the ClickHouse server at chAddr, all removed when the test passes.
func newEnv(t *testing.T, brokerList, chAddr string) *testEnv {
	t.Helper()
	sfx := suffix()
	e := &testEnv{
		events: "test.events." + sfx,
		dlq:    "test.dlq." + sfx,
		group:  "test-" + sfx,
		ch:     schemas.ClickHouseConfig{Addr: chAddr, Database: "test_" + sfx, Username: "default"},
	}
	for _, s := range strings.Split(brokerList, ",") {
		if s = strings.TrimSpace(s); s != "" {
			e.brokers = append(e.brokers, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, 1, e.events, e.dlq); err != nil {
		t.Fatal(err)
	}
	conn, err := schemas.OpenClickHouse(ctx, e.ch)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	t.Cleanup(func() {
		e.dropDatabase(t)
		c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.events, e.dlq}})
	})
	return e
}

// twin returns an env on the same topics with a consumer group and a
// database of its own: a second pipeline over the same stream.
func (e *testEnv) twin(t *testing.T) *testEnv {
	t.Helper()
	sfx := suffix()
	tw := *e
	tw.group, tw.ch.Database = "test-"+sfx, "test_"+sfx
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := schemas.OpenClickHouse(ctx, tw.ch)
	if err != nil {
		t.Fatal(err)
	}
	tw.conn = conn
	t.Cleanup(func() { tw.dropDatabase(t) })
	return &tw
}

// dropDatabase drops the env's database if the test passed, and closes
// the connection.
func (e *testEnv) dropDatabase(t *testing.T) {
	if !t.Failed() {
		_ = e.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+e.ch.Database)
	} else {
		t.Logf("kept ClickHouse database %s on %s for inspection", e.ch.Database, e.ch.Addr)
	}
	e.conn.Close()
}

func suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// produce writes msgs to topic, keyed as given, acknowledged by all
// replicas. Messages the broker refused (a new topic may not be known yet)
// are sent again, up to 5 times.
func (e *testEnv) produce(ctx context.Context, t *testing.T, topic string, msgs []kafka.Message) {
	t.Helper()
	// Metadata of its own, soon stale: the shared transport's may be older
	// than the test's topics.
	tr := &kafka.Transport{MetadataTTL: 500 * time.Millisecond}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, BatchSize: 1000, Transport: tr}
	defer w.Close()
	for attempt := 1; ; attempt++ {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			return
		}
		failed := msgs // none written, unless it says which failed
		var werr kafka.WriteErrors
		if errors.As(err, &werr) {
			failed = nil
			for i, err := range werr {
				if err != nil {
					failed = append(failed, msgs[i])
				}
			}
		}
		if ctx.Err() != nil {
			return // the test is over
		}
		if len(failed) == 0 || attempt == 5 {
			t.Errorf("produce: %v", err)
			return
		}
		t.Logf("produce: %d of %d messages again: %v", len(failed), len(msgs), err)
		msgs = failed
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
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
	end, err := ingest.EndOffsets(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// readAll reads every message now in topic, each partition in offset order.
func (e *testEnv) readAll(ctx context.Context, t *testing.T, topic string) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p, last := range e.endOffsets(ctx, t, topic) {
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: topic, Partition: p,
			MaxWait: 100 * time.Millisecond, QueueCapacity: 10000})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset+1 >= last {
				break
			}
		}
		r.Close()
	}
	return out
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
	end := e.endOffsets(ctx, t, e.events)
	for {
		got, err := e.aggregated(ctx)
		done := 0
		for p, want := range end {
			if err == nil && got[p] >= want {
				done++
			}
		}
		if done == len(end) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("aggregation did not reach the end offsets %v in time; got %v (%v)", end, got, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
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

// privateClickHouse starts a ClickHouse server of the test's own with
// .ci/clickhouse.sh, on free ports and in a temporary directory; the
// returned function runs the script with another command (pause, start).
func privateClickHouse(t *testing.T) (addr string, script func(cmd string)) {
	t.Helper()
	dir := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	script = func(cmd string) {
		t.Helper()
		c := exec.Command("bash", filepath.Join("..", ".ci", "clickhouse.sh"), cmd)
		c.Env = append(os.Environ(), "IMMETER_RUN_DIR="+dir,
			"CLICKHOUSE_PORT="+strconv.Itoa(port), "CLICKHOUSE_HTTP_PORT="+strconv.Itoa(httpPort))
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("clickhouse.sh %s: %v\n%s", cmd, err, out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	}
	script("start")
	t.Cleanup(func() { script("stop") })
	return "127.0.0.1:" + strconv.Itoa(port), script
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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

// privateKafka starts a Kafka broker of the test's own with .ci/kafka.sh,
// on free ports and in a temporary directory; the returned function runs
// the script with another command (pause, start).
func privateKafka(t *testing.T) (addr string, script func(cmd string)) {
	t.Helper()
	dir := t.TempDir()
	port, controller := freePort(t), freePort(t)
	script = func(cmd string) {
		t.Helper()
		c := exec.Command("bash", filepath.Join("..", ".ci", "kafka.sh"), cmd)
		c.Env = append(os.Environ(), "IMMETER_RUN_DIR="+dir,
			"KAFKA_PORT="+strconv.Itoa(port), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(controller))
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("kafka.sh %s: %v\n%s", cmd, err, out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	}
	script("start")
	t.Cleanup(func() { script("stop") })
	return "127.0.0.1:" + strconv.Itoa(port), script
}

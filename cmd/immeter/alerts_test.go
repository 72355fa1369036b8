package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// Statements of the alert tests.
const (
	sqlTestStoredAlerts    = `SELECT uniqExact(id) FROM alerts`
	sqlTestPublishedAlerts = `SELECT uniqExact(id) FROM alerts_published`
	sqlTestInsertAlert     = `INSERT INTO alerts (id, app, kind, period, edition, level, value, quota, at, record, generated_at)`
)

// alertEnv is a testEnv with an alerts topic and an alerter that the test
// can stop and start again.
type alertEnv struct {
	*testEnv
	alerts string
	now    func() time.Time
	loc    *time.Location
	stop   func()
}

func newAlertEnv(ctx context.Context, t *testing.T, now func() time.Time, loc *time.Location) *alertEnv {
	t.Helper()
	e := &alertEnv{testEnv: integration(t), now: now, loc: loc}
	e.alerts = strings.Replace(e.events, "test.events.", "test.alerts.", 1)
	if err := ingest.EnsureTopics(ctx, e.brokers, testPartitions, 1, e.alerts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.stopAlerter()
		c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.alerts}})
	})
	return e
}

// startAlerter runs an Alerter checking every 50ms until stopAlerter.
func (e *alertEnv) startAlerter(t *testing.T) {
	t.Helper()
	cfg := rollup.DefaultAlertConfig()
	cfg.Brokers, cfg.Topic, cfg.Location, cfg.Now = e.brokers, e.alerts, e.loc, e.now
	cfg.Interval = 50 * time.Millisecond
	a, err := rollup.NewAlerter(cfg, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	e.stop = func() {
		cancel()
		<-done
		a.Close()
	}
}

func (e *alertEnv) stopAlerter() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

// waitAlerts waits until the alerts topic holds want messages, checks that
// no more come for a while, and returns them decoded, ordered by id.
func (e *alertEnv) waitAlerts(ctx context.Context, t *testing.T, want int) []schemas.Alert {
	t.Helper()
	count := func() int {
		var total int64
		for _, o := range e.endOffsets(ctx, t, e.alerts) {
			total += o
		}
		return int(total)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // ten more checks: nothing else may come
	if got := count(); got != want {
		t.Fatalf("unexpected number of alerts on the topic; got %d; want %d", got, want)
	}
	var out []schemas.Alert
	for _, m := range e.readAll(ctx, t, e.alerts, want) {
		var a schemas.Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatalf("alert %s: %v", m.Value, err)
		}
		if string(m.Key) != strconv.FormatUint(uint64(a.App), 10) {
			t.Errorf("alert %s: unexpected key %q", a.ID, m.Key)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// checkAlert checks an alert's identity and figures; a value of -1 is not
// checked.
func checkAlert(t *testing.T, got []schemas.Alert, id string, value, limit int64) {
	t.Helper()
	i := slices.IndexFunc(got, func(a schemas.Alert) bool { return a.ID == id })
	if i < 0 {
		t.Errorf("alert %s missing", id)
		return
	}
	a := got[i]
	if a.ID != id || (value >= 0 && a.Value != value) || a.Limit != limit {
		t.Errorf("unexpected alert; got id %s value %d limit %d; want id %s value %d limit %d", a.ID, a.Value, a.Limit, id, value, limit)
	}
	parts := strings.Split(id, ":")
	if a.Kind != parts[1] || a.Period != parts[2] || a.Edition != parts[3] || strconv.Itoa(a.Level) != parts[4] {
		t.Errorf("alert %s: fields do not match the id: %+v", id, a)
	}
	if a.At.IsZero() || a.GeneratedAt.IsZero() {
		t.Errorf("alert %s: times missing: %+v", id, a)
	}
}

// storedAlerts returns the number of distinct alert ids in ClickHouse.
func (e *alertEnv) storedAlerts(ctx context.Context, t *testing.T) uint64 {
	t.Helper()
	var n uint64
	if err := e.conn.QueryRow(ctx, sqlTestStoredAlerts).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventMsg(e schemas.Event) kafka.Message {
	b, _ := json.Marshal(e)
	return kafka.Message{Key: []byte(strconv.FormatUint(uint64(e.App), 10)), Value: b}
}

func logins(app uint32, from, to int, at time.Time) []kafka.Message {
	var out []kafka.Message
	for i := from; i <= to; i++ {
		out = append(out, eventMsg(schemas.Event{ID: fmt.Sprintf("login-%d", i), Type: schemas.Login, App: app,
			User: fmt.Sprintf("user-%d", i), Time: at}))
	}
	return out
}

// subprocess is `immeter aggregate` run from the test binary.
type subprocess struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

func (e *alertEnv) startAggregateProcess(t *testing.T) *subprocess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "aggregate")
	cmd.Env = append(os.Environ(),
		"IMMETER_TEST_MAIN=1",
		"KAFKA_BROKERS="+strings.Join(e.brokers, ","),
		"KAFKA_PARTITIONS="+strconv.Itoa(testPartitions),
		"EVENTS_TOPIC="+e.events, "DLQ_TOPIC="+e.dlq, "BILLING_TOPIC="+e.billing,
		"AGGREGATE_GROUP="+e.group, "AGGREGATE_SESSION_TIMEOUT=6s", "FLUSH_INTERVAL=100ms",
		"CLICKHOUSE_ADDR="+e.ch.Addr, "CLICKHOUSE_DATABASE="+e.ch.Database,
	)
	p := &subprocess{cmd: cmd, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	w := &lockedWriter{mu: p.mu, w: p.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("log of immeter aggregate:\n%s", p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

// kill9 sends SIGKILL and waits for the process to end.
func (p *subprocess) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestAlertsMAUQuotaKill9Replay: a Developer app (free MAU 100) reaches 80
// and then 100 distinct users, with a kill -9 of `immeter aggregate` and a
// restart of the alerter between the two, and the whole stream published
// again: exactly two mau_quota alerts, each with the exact MAU when issued.
// Logins repeated by the same users do not make an alert: 79 users with 109
// logins stay below 80%.
func TestAlertsMAUQuotaKill9Replay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	env := newAlertEnv(ctx, t, time.Now, loc)
	const app = 1400000101
	now := time.Now()
	month := schemas.MonthOf(now, loc).String()

	agg := env.startAggregateProcess(t)
	env.startAlerter(t)
	stream := logins(app, 1, 79, now)
	for i := range 30 { // the same user again: logins, not users
		stream = append(stream, eventMsg(schemas.Event{ID: fmt.Sprintf("again-%d", i), Type: schemas.Login, App: app, User: "user-1", Time: now}))
	}
	env.produce(ctx, t, env.events, stream)
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 0)

	more := logins(app, 80, 80, now)
	env.produce(ctx, t, env.events, more)
	stream = append(stream, more...)
	env.waitAggregated(ctx, t, env.events)
	got := env.waitAlerts(ctx, t, 1)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:%s:developer:80", app, month), 80, 100)

	// Between the two levels: the alerter restarts, and the aggregator is
	// killed while it consumes the next twenty users.
	env.stopAlerter()
	more = logins(app, 81, 100, now)
	env.produce(ctx, t, env.events, more)
	stream = append(stream, more...)
	time.Sleep(150 * time.Millisecond)
	agg.kill9()
	env.startAlerter(t)
	env.produce(ctx, t, env.events, stream) // the whole stream again
	env.startAggregateProcess(t)
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 2)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:%s:developer:100", app, month), 100, 100)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:%s:developer:80", app, month), 80, 100)

	// The alerter starting again over the same data publishes nothing new.
	env.stopAlerter()
	env.startAlerter(t)
	env.waitAlerts(ctx, t, 2)
	if n := env.storedAlerts(ctx, t); n != 2 {
		t.Errorf("unexpected alerts stored in ClickHouse; got %d; want 2", n)
	}
}

// runInProcess runs an in-process aggregator on env with the given clock.
func (e *alertEnv) runInProcess(ctx context.Context, t *testing.T, now func() time.Time) {
	t.Helper()
	agg, err := aggregate.New(testAggregateConfig(e.testEnv, func(c *aggregate.Config) {
		c.Location = e.loc
		c.FlushInterval = 50 * time.Millisecond
		c.Now = now
	}), e.conn)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = agg.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

func groups(app uint32, op, typ string, prefix string, n int, at time.Time) []kafka.Message {
	var out []kafka.Message
	for i := range n {
		g := fmt.Sprintf("%s-%d", prefix, i)
		out = append(out, eventMsg(schemas.Event{ID: op + "-" + g, Type: schemas.Group, App: app, Op: op, Group: g, GroupType: typ, Time: at}))
	}
	return out
}

// TestAlertsDailyNetGroupsAndLiveGroups: a Developer app (100 net groups a
// day, 10 live-streaming groups) crosses 100% of its daily net group
// increase on October 10 and only 80% on October 11 (150 created, 60
// dissolved); its live groups reach 8 (80%), counting only those not
// dissolved, then 10.
func TestAlertsDailyNetGroupsAndLiveGroups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 11, 20, 0, 0, 0, loc))
	env := newAlertEnv(ctx, t, clock.Now, loc)
	const app = 1400000102
	env.runInProcess(ctx, t, clock.Now)
	env.startAlerter(t)
	day10, day11 := time.Date(2026, 10, 10, 9, 0, 0, 0, loc), time.Date(2026, 10, 11, 9, 0, 0, 0, loc)

	env.produce(ctx, t, env.events, groups(app, "create", "Work", "a", 79, day10))
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 0)
	env.produce(ctx, t, env.events, groups(app, "create", "Public", "b", 1, day10))
	env.waitAggregated(ctx, t, env.events)
	got := env.waitAlerts(ctx, t, 1)
	checkAlert(t, got, fmt.Sprintf("%d:daily_net_groups:2026-10-10:developer:80", app), 80, 100)
	env.produce(ctx, t, env.events, groups(app, "create", "Work", "c", 25, day10))
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 2)
	checkAlert(t, got, fmt.Sprintf("%d:daily_net_groups:2026-10-10:developer:100", app), 105, 100)

	// October 11: dissolutions first, so that no flush sees more than 90 net.
	day := append(groups(app, "dissolve", "Work", "a", 60, day11), groups(app, "create", "Meeting", "d", 150, day11)...)
	env.produce(ctx, t, env.events, day)
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 3)
	checkAlert(t, got, fmt.Sprintf("%d:daily_net_groups:2026-10-11:developer:80", app), -1, 100)
	if i := slices.IndexFunc(got, func(a schemas.Alert) bool { return a.Period == "2026-10-11" }); i < 0 || got[i].Value < 80 || got[i].Value > 90 {
		t.Errorf("unexpected October 11 alert; got %+v; want one with a value in 80..90", got)
	}

	// Live-streaming groups: 9 created, 2 dissolved, 1 created: 8 exist.
	// They count in the net increase of their day too: October 9's stays
	// below 80.
	day9 := time.Date(2026, 10, 9, 9, 0, 0, 0, loc)
	live := append(groups(app, "create", "AVChatRoom", "live", 9, day9), groups(app, "dissolve", "AVChatRoom", "live", 2, day9.Add(time.Minute))...)
	env.produce(ctx, t, env.events, live)
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 3) // 7 live groups: below 80%
	env.produce(ctx, t, env.events, groups(app, "create", "AVChatRoom", "live2", 1, day9.Add(2*time.Minute)))
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 4)
	checkAlert(t, got, fmt.Sprintf("%d:live_groups:current:developer:80", app), 8, 10)
	env.produce(ctx, t, env.events, groups(app, "create", "AVChatRoom", "live3", 2, day9.Add(3*time.Minute)))
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 5)
	checkAlert(t, got, fmt.Sprintf("%d:live_groups:current:developer:100", app), 10, 10)
}

// TestAlertsCommunityAllowance: a Premium app (100M community messages
// included) is alerted at 80M exactly, not at 99,999,999, and at 100M.
func TestAlertsCommunityAllowance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	env := newAlertEnv(ctx, t, clock.Now, loc)
	const app = 1400000103
	env.runInProcess(ctx, t, clock.Now)
	env.startAlerter(t)
	at := time.Date(2026, 10, 5, 9, 0, 0, 0, loc)
	msg := func(id string, n int64) kafka.Message {
		return eventMsg(schemas.Event{ID: id, Type: schemas.Message, App: app, User: "u", Channel: "community", Count: n, Time: at})
	}
	plan := eventMsg(schemas.Event{ID: "plan", Type: schemas.Plan, App: app, Edition: "premium", Time: time.Date(2026, 10, 1, 0, 0, 0, 0, loc)})
	env.produce(ctx, t, env.events, []kafka.Message{plan, msg("m1", 79_999_999)})
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 0)
	env.produce(ctx, t, env.events, []kafka.Message{msg("m2", 1)})
	env.waitAggregated(ctx, t, env.events)
	got := env.waitAlerts(ctx, t, 1)
	checkAlert(t, got, fmt.Sprintf("%d:community_allowance:2026-10:premium:80", app), 80_000_000, 100_000_000)
	env.produce(ctx, t, env.events, []kafka.Message{msg("m3", 19_999_999)})
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 1)
	env.produce(ctx, t, env.events, []kafka.Message{msg("m4", 1)})
	env.waitAggregated(ctx, t, env.events)
	got = env.waitAlerts(ctx, t, 2)
	checkAlert(t, got, fmt.Sprintf("%d:community_allowance:2026-10:premium:100", app), 100_000_000, 100_000_000)
}

// TestAlertsUpgradeRearms: a Developer app alerted at 80 and 100 of its 100
// free MAU upgrades to Standard (10,000 free MAU): mau_quota is alerted
// again at 8,000 users, for the Standard edition, and not before.
func TestAlertsUpgradeRearms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	env := newAlertEnv(ctx, t, clock.Now, loc)
	const app = 1400000104
	env.runInProcess(ctx, t, clock.Now)
	env.startAlerter(t)
	at := time.Date(2026, 10, 3, 9, 0, 0, 0, loc)

	env.produce(ctx, t, env.events, logins(app, 1, 80, at))
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 1)
	env.produce(ctx, t, env.events, logins(app, 81, 100, at))
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 2)

	upgrade := clock.Now()
	env.produce(ctx, t, env.events, []kafka.Message{eventMsg(schemas.Event{ID: "up", Type: schemas.Plan, App: app, Edition: "standard", Time: upgrade})})
	env.produce(ctx, t, env.events, logins(app, 101, 7999, upgrade))
	env.waitAggregated(ctx, t, env.events)
	env.waitAlerts(ctx, t, 2)
	env.produce(ctx, t, env.events, logins(app, 8000, 8000, upgrade))
	env.waitAggregated(ctx, t, env.events)
	got := env.waitAlerts(ctx, t, 3)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:2026-10:developer:100", app), 100, 100)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:2026-10:developer:80", app), 80, 100)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:2026-10:standard:80", app), 8000, 10000)
}

// TestAlertsStoredButUnpublished: an alert stored in ClickHouse by an
// alerter that died before Kafka acknowledged it is published at the next
// start byte for byte, and its level is not alerted again with the content
// of now.
func TestAlertsStoredButUnpublished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	env := newAlertEnv(ctx, t, clock.Now, loc)
	const app = 1400000105
	id := fmt.Sprintf("%d:mau_quota:2026-10:developer:80", app)
	at := time.Date(2026, 10, 20, 3, 59, 58, 123000000, time.UTC)
	stored := schemas.Alert{ID: id, App: app, Kind: schemas.AlertMAUQuota, Period: "2026-10", Level: 80, Value: 81, Limit: 100,
		Edition: "developer", At: at, GeneratedAt: at.Truncate(time.Second)}
	body, _ := json.Marshal(stored)
	if err := schemas.InsertRow(ctx, env.conn, sqlTestInsertAlert,
		id, uint32(app), stored.Kind, stored.Period, stored.Edition, uint16(80), int64(81), uint64(100), at.Truncate(time.Second), string(body), at.Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
	env.runInProcess(ctx, t, clock.Now)
	env.produce(ctx, t, env.events, logins(app, 1, 100, time.Date(2026, 10, 3, 9, 0, 0, 0, loc)))
	env.waitAggregated(ctx, t, env.events)
	env.startAlerter(t)
	got := env.waitAlerts(ctx, t, 2)
	checkAlert(t, got, fmt.Sprintf("%d:mau_quota:2026-10:developer:100", app), 100, 100)
	checkAlert(t, got, id, 81, 100)
	var found bool
	for _, m := range env.readAll(ctx, t, env.alerts, 2) {
		found = found || bytes.Equal(m.Value, body)
	}
	if !found {
		t.Errorf("the stored alert was not published byte for byte:\n%s", body)
	}
	var published uint64
	if err := env.conn.QueryRow(ctx, sqlTestPublishedAlerts).Scan(&published); err != nil || published != 2 {
		t.Errorf("unexpected alerts marked published; got %d (%v); want 2", published, err)
	}
}

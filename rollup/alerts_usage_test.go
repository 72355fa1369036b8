package rollup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

// Statements of the alerter's tests on the real services.
const (
	sqlTestInsertUsage = `INSERT INTO daily_usage
		(app, day, src_partition, version, logins, messages_community, groups_created, groups_dissolved, updated_at)`
	sqlTestInsertUserDays = `INSERT INTO user_days (app, day, user)`
	sqlTestInsertLive     = `INSERT INTO live_group_changes (app, group_id, op, at, at_nanos, id)`
	sqlTestHideUserDays   = `RENAME TABLE user_days TO user_days_hidden`
	sqlTestShowUserDays   = `RENAME TABLE user_days_hidden TO user_days`
	// sqlTestUsageTruth: args from, to. What the table says each row is.
	sqlTestUsageTruth = `SELECT app, day, src_partition, max(version),
	argMax(logins, version), argMax(messages_community, version), argMax(groups_created, version), argMax(groups_dissolved, version)
FROM daily_usage WHERE day >= toDate(?) AND day <= toDate(?)
GROUP BY app, day, src_partition`
)

// alertTestEnv is a private database (migrated) and alerts topic on the
// real ClickHouse and Kafka, and an Alerter on them with a clock the test
// sets.
type alertTestEnv struct {
	brokers []string
	topic   string
	conn    driver.Conn
	loc     *time.Location

	mu  sync.Mutex
	now time.Time
}

func newAlertTestEnv(ctx context.Context, t *testing.T, now time.Time) *alertTestEnv {
	t.Helper()
	brokerList, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokerList == "" || chAddr == "" {
		if os.Getenv("IMMETER_INTEGRATION") == "1" {
			t.Fatal("IMMETER_INTEGRATION=1 but KAFKA_BROKERS or CLICKHOUSE_ADDR is unset")
		}
		t.Skip("integration test: set KAFKA_BROKERS and CLICKHOUSE_ADDR (make test starts both)")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	sfx := hex.EncodeToString(b[:])
	loc, _ := schemas.ParseTimezone("+08:00")
	e := &alertTestEnv{brokers: strings.Split(brokerList, ","), topic: "test.alerts." + sfx, loc: loc, now: now}
	ch := schemas.ClickHouseConfig{Addr: chAddr, Database: "test_" + sfx, Username: "default"}
	conn, err := schemas.OpenClickHouse(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	if err := ingest.EnsureTopics(ctx, e.brokers, 1, 1, e.topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ch.Database)
		} else {
			t.Logf("kept ClickHouse database %s for inspection", ch.Database)
		}
		conn.Close()
		c := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.topic}})
	})
	return e
}

func (e *alertTestEnv) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *alertTestEnv) advance(d time.Duration) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
	return e.now
}

// alerter returns a started Alerter on the env.
func (e *alertTestEnv) alerter(ctx context.Context, t *testing.T) *Alerter {
	t.Helper()
	cfg := DefaultAlertConfig()
	cfg.Brokers, cfg.Topic, cfg.Location, cfg.Now = e.brokers, e.topic, e.loc, e.Now
	a, err := NewAlerter(cfg, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// usageRecord is a daily_usage row as the test writes it.
type usageRecord struct {
	app       uint32
	day       string
	part      int32
	version   uint64
	logins    uint64
	community uint64
	created   uint64
	dissolved uint64
	updatedAt time.Time
}

func (e *alertTestEnv) insert(ctx context.Context, t *testing.T, rs ...usageRecord) {
	t.Helper()
	if len(rs) == 0 {
		return
	}
	b, err := e.conn.PrepareBatch(ctx, sqlTestInsertUsage)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		d, _ := time.Parse(time.DateOnly, r.day)
		if err := b.Append(r.app, d, r.part, r.version, r.logins, r.community, r.created, r.dissolved, r.updatedAt.UTC().Truncate(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func (e *alertTestEnv) users(ctx context.Context, t *testing.T, app uint32, day string, from, to int) {
	t.Helper()
	b, err := e.conn.PrepareBatch(ctx, sqlTestInsertUserDays)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := time.Parse(time.DateOnly, day)
	for i := from; i <= to; i++ {
		if err := b.Append(app, d, fmt.Sprintf("user-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// check runs one check and requires the alerts it publishes to be want
// (ids), with their values.
func (e *alertTestEnv) check(ctx context.Context, t *testing.T, a *Alerter, full bool, want map[string]int64) {
	t.Helper()
	before := e.published(ctx, t)
	n, err := a.Check(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	all := e.read(ctx, t)
	if n != len(want) || len(all) != before+len(want) {
		t.Fatalf("unexpected alerts; published %d (topic %d -> %d); want %v", n, before, len(all), want)
	}
	for _, al := range all[before:] {
		v, ok := want[al.ID]
		if !ok || al.Value != v {
			t.Errorf("unexpected alert %s value %d; want %v", al.ID, al.Value, want)
		}
	}
}

func (e *alertTestEnv) published(ctx context.Context, t *testing.T) int {
	t.Helper()
	end, err := ingest.EndOffsets(ctx, e.brokers, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	return int(end[0])
}

// read returns every alert on the topic, in order.
func (e *alertTestEnv) read(ctx context.Context, t *testing.T) []schemas.Alert {
	t.Helper()
	n := e.published(ctx, t)
	if n == 0 {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []schemas.Alert
	for len(out) < n {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatal(err)
		}
		var al schemas.Alert
		if err := json.Unmarshal(m.Value, &al); err != nil {
			t.Fatal(err)
		}
		out = append(out, al)
	}
	return out
}

// requireTruth requires the alerter's copy of daily_usage to be what the
// table holds (argMax by version) for the open and the previous month.
func (e *alertTestEnv) requireTruth(ctx context.Context, t *testing.T, a *Alerter) {
	t.Helper()
	cur := schemas.MonthOf(e.Now(), e.loc)
	rows, err := e.conn.Query(ctx, sqlTestUsageTruth, cur.Prev().FirstDay().String(), cur.LastDay().String())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[uint32]*appUsage{}
	for rows.Next() {
		var app uint32
		var day time.Time
		var r usageRow
		if err := rows.Scan(&app, &day, &r.part, &r.version, &r.logins, &r.community, &r.created, &r.dissolved); err != nil {
			t.Fatal(err)
		}
		r.day = schemas.DayFromDate(day.Date())
		if want[app] == nil {
			want[app] = &appUsage{}
		}
		_, _, _ = want[app].apply(r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(a.usage) {
		t.Fatalf("unexpected apps held; got %d; want %d", len(a.usage), len(want))
	}
	for app, w := range want {
		if got := a.usage[app]; got == nil || !slices.Equal(got.rows, w.rows) {
			t.Fatalf("app %d: unexpected rows held;\ngot  %+v\nwant %+v", app, got, w.rows)
		}
	}
}

// TestAlertsIncremental: after the load, each check reads only the rows
// written since the previous one, less the overlap, and misses none: a row
// written normally; one that lands after a check with an updated_at 8 s
// before that check began (a slow flush, or the aggregator's clock behind);
// an older version of a row that lands after the newer one (a replayed
// flush), which must not replace it. The values are exact, the copy equals
// the table after every check, a row landing beyond the overlap is read by
// the next full load, an app whose users or live groups land a check after
// its counters is alerted when they do, and an alerter started again
// publishes nothing twice.
func TestAlertsIncremental(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	t0 := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	e := newAlertTestEnv(ctx, t, t0)
	const appA, appB, appC, appD, appE, appF, appG, appH = 1400000201, 1400000202, 1400000203, 1400000204, 1400000205, 1400000206, 1400000207, 1400000208
	old := t0.Add(-time.Hour)
	// Developer apps: 100 net groups a day, 100 free MAU. appF has rows in
	// September (the previous month), which stay below the levels.
	e.insert(ctx, t,
		usageRecord{app: appA, day: "2026-10-19", part: 0, version: 10, created: 79, updatedAt: old},
		usageRecord{app: appB, day: "2026-10-20", part: 1, version: 10, created: 50, updatedAt: old},
		usageRecord{app: appC, day: "2026-10-20", part: 2, version: 100, created: 79, updatedAt: old},
		usageRecord{app: appD, day: "2026-10-20", part: 3, version: 10, logins: 79, updatedAt: old},
		usageRecord{app: appF, day: "2026-09-30", part: 0, version: 7, logins: 5, created: 3, updatedAt: old},
	)
	e.users(ctx, t, appD, "2026-10-20", 1, 79)
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)
	e.requireTruth(ctx, t, a)

	// A row written and read as usual.
	now := e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appA, day: "2026-10-19", part: 0, version: 11, created: 80, updatedAt: now})
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-19:developer:80", appA): 80})

	// A row stamped 8 s before the check that could not see it.
	now = e.advance(time.Second)
	e.check(ctx, t, a, false, nil)
	e.insert(ctx, t, usageRecord{app: appB, day: "2026-10-20", part: 1, version: 11, created: 100, updatedAt: now.Add(-8 * time.Second)})
	e.advance(time.Second)
	e.check(ctx, t, a, false, map[string]int64{
		fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appB):  100,
		fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:100", appB): 100,
	})
	e.requireTruth(ctx, t, a)

	// An older version of appC's partition-2 row lands after the newer one,
	// with a later updated_at, along with a new row of partition 3: the day
	// is 79 + 1, not 60 + 1.
	now = e.advance(time.Second)
	e.insert(ctx, t,
		usageRecord{app: appC, day: "2026-10-20", part: 2, version: 50, created: 60, updatedAt: now},
		usageRecord{app: appC, day: "2026-10-20", part: 3, version: 5, created: 1, updatedAt: now},
	)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appC): 80})
	e.requireTruth(ctx, t, a)

	// The 80th user: the value is the exact MAU.
	now = e.advance(time.Second)
	e.users(ctx, t, appD, "2026-10-20", 79, 80)
	e.insert(ctx, t, usageRecord{app: appD, day: "2026-10-20", part: 3, version: 12, logins: 81, updatedAt: now})
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appD): 80})

	// The logins of a flush land before its users (user_days), and its
	// group counters before its live groups (live_group_changes): the apps
	// are checked again while their rows are recent, and alerted when the
	// rest lands.
	now = e.advance(time.Second)
	e.insert(ctx, t,
		usageRecord{app: appG, day: "2026-10-20", part: 0, version: 20, logins: 80, updatedAt: now},
		usageRecord{app: appH, day: "2026-10-20", part: 1, version: 20, created: 8, updatedAt: now},
	)
	e.check(ctx, t, a, false, nil)
	e.advance(time.Second)
	e.check(ctx, t, a, false, nil)
	e.advance(time.Second)
	e.users(ctx, t, appG, "2026-10-20", 1, 80)
	b, err := e.conn.PrepareBatch(ctx, sqlTestInsertLive)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if err := b.Append(uint32(appH), fmt.Sprintf("live-%d", i), "create", now.Add(-time.Minute).UTC().Truncate(time.Second), uint32(0), fmt.Sprintf("c-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	e.check(ctx, t, a, false, map[string]int64{
		fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appG):   80,
		fmt.Sprintf("%d:live_groups:current:developer:80", appH): 8,
	})

	// A row landing 60 s after its updated_at, beyond the overlap: the
	// incremental read does not see it; the next full load does.
	now = e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appE, day: "2026-10-18", part: 0, version: 3, created: 90, updatedAt: now.Add(-time.Minute)})
	e.advance(time.Second)
	e.check(ctx, t, a, false, nil)
	e.advance(time.Second)
	e.check(ctx, t, a, true, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-18:developer:80", appE): 90})
	e.requireTruth(ctx, t, a)

	// Started again over the same rows: nothing new.
	a2 := e.alerter(ctx, t)
	e.check(ctx, t, a2, true, nil)
	e.advance(time.Second)
	e.check(ctx, t, a2, false, nil)
	if got := len(e.read(ctx, t)); got != 8 {
		t.Fatalf("unexpected alerts on the topic; got %d; want 8", got)
	}
}

// TestAlertsUsageMatchesTable: rows of random apps, days, partitions and
// versions land between checks, some with an updated_at up to 9 s before
// the previous check began and some older versions after newer ones; after
// every incremental check the alerter's copy equals the table's argMax.
func TestAlertsUsageMatchesTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	rng := mrand.New(mrand.NewPCG(1, 2))
	days := []string{"2026-09-29", "2026-09-30", "2026-10-01", "2026-10-19", "2026-10-20"}
	row := func(updated time.Time) usageRecord {
		return usageRecord{app: 1400000300 + uint32(rng.IntN(40)), day: days[rng.IntN(len(days))], part: int32(rng.IntN(3)),
			version: uint64(rng.IntN(1000)), logins: uint64(rng.IntN(50)), community: uint64(rng.IntN(1000)),
			created: uint64(rng.IntN(60)), dissolved: uint64(rng.IntN(10)), updatedAt: updated}
	}
	var rs []usageRecord
	for range 100 {
		rs = append(rs, row(e.Now().Add(-time.Hour)))
	}
	e.insert(ctx, t, rs...)
	a := e.alerter(ctx, t)
	if _, err := a.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.requireTruth(ctx, t, a)
	for round := range 15 {
		began := e.Now() // the last check began here
		now := e.advance(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		rs = rs[:0]
		for range 40 {
			rs = append(rs, row(began.Add(-time.Duration(rng.IntN(9000))*time.Millisecond)))
		}
		for range 20 {
			rs = append(rs, row(now))
		}
		e.insert(ctx, t, rs...)
		if _, err := a.Check(ctx, false); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d apps, %d rows held", round, len(a.usage), a.usageRows())
		e.requireTruth(ctx, t, a)
	}
}

// TestAlertsFailedCheck: a check that reads the new rows and then fails
// (user_days is missing) leaves their apps to the next check, even when it
// comes after the overlap, when the rows are no longer read.
func TestAlertsFailedCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appX, appY = 1400000401, 1400000402
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)
	now := e.advance(time.Second)
	e.insert(ctx, t,
		usageRecord{app: appX, day: "2026-10-20", part: 0, version: 5, created: 80, updatedAt: now},
		usageRecord{app: appY, day: "2026-10-20", part: 1, version: 5, logins: 80, updatedAt: now},
	)
	e.users(ctx, t, appY, "2026-10-20", 1, 80)
	if err := e.conn.Exec(ctx, sqlTestHideUserDays); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(ctx, false); err == nil {
		t.Fatal("the check succeeded without user_days")
	}
	if err := e.conn.Exec(ctx, sqlTestShowUserDays); err != nil {
		t.Fatal(err)
	}
	e.advance(2 * overlap)
	e.check(ctx, t, a, false, map[string]int64{
		fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appX): 80,
		fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appY):           80,
	})
}

// Statements of the position tests.
const (
	sqlTestInsertPosition   = `INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at)`
	sqlTestTruncatePosition = `TRUNCATE TABLE consumer_offsets`
)

// storePosition stores partition p's position as an aggregator does once
// a flush is complete.
func (e *alertTestEnv) storePosition(ctx context.Context, t *testing.T, p int32, next uint64) {
	t.Helper()
	if err := schemas.InsertRow(ctx, e.conn, sqlTestInsertPosition, "immeter-aggregate", "im.events", p, next, e.Now().UTC().Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestAlertsPositions: with stored positions, an incremental check reads the
// rows above the position each partition had when the previous read began,
// whatever their updated_at: a row stamped a minute before it lands (a flush
// stuck, or the aggregator's clock behind the alerter's) and a replayed
// flush's row, whose version is below the versions already read, are
// alerted at once, not at the next sweep; rows at or below the position are
// not read again. A position that falls (ClickHouse restored) makes the next
// check load the months again.
func TestAlertsPositions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appA, appB, appC, appD, appE = 1400000501, 1400000502, 1400000503, 1400000504, 1400000505
	old := e.Now().Add(-time.Hour)
	e.insert(ctx, t,
		usageRecord{app: appA, day: "2026-10-20", part: 0, version: 100, created: 10, updatedAt: old},
		usageRecord{app: appB, day: "2026-10-20", part: 1, version: 100, created: 10, updatedAt: old},
	)
	e.storePosition(ctx, t, 0, 100)
	e.storePosition(ctx, t, 1, 100)
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)

	// A flush of partition 0 (version 110) lands its rows stamped a minute
	// ago and crashes before storing its position.
	now := e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appA, day: "2026-10-20", part: 0, version: 110, created: 80, updatedAt: now.Add(-time.Minute)})
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appA): 80})
	if a.lastRead != 1 {
		t.Fatalf("unexpected rows read; got %d; want 1", a.lastRead)
	}
	// Its replay, from position 100, flushes up to 105 only: appC's row has
	// a version below the 110 already read, and the replaying aggregator's
	// clock is a minute behind.
	now = e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appC, day: "2026-10-20", part: 0, version: 105, created: 85, updatedAt: now.Add(-time.Minute)})
	e.storePosition(ctx, t, 0, 105)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appC): 85})
	e.requireTruth(ctx, t, a)
	// The replay goes on past 110 and stores its position. A check reads
	// the rows above the positions read during the check before it, in the
	// parts with blocks above those listed before the previous read began:
	// above 100 (the 112 row of appC; the 110 row of appA is in a part read
	// before), then above 105 and above 112 (none: no new part).
	now = e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appC, day: "2026-10-20", part: 0, version: 112, created: 100, updatedAt: now})
	e.storePosition(ctx, t, 0, 112)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:100", appC): 100})
	for _, want := range []int{1, 0, 0} {
		if a.lastRead != want {
			t.Fatalf("unexpected rows read; got %d; want %d", a.lastRead, want)
		}
		e.advance(time.Second)
		e.check(ctx, t, a, false, nil)
	}
	e.requireTruth(ctx, t, a)

	// ClickHouse restored from an older backup: the positions fall, and the
	// rows written from there on have versions below those read before.
	if err := e.conn.Exec(ctx, sqlTestTruncatePosition); err != nil {
		t.Fatal(err)
	}
	e.storePosition(ctx, t, 0, 50)
	e.storePosition(ctx, t, 1, 50)
	e.check(ctx, t, a, false, nil) // read the positions
	e.check(ctx, t, a, false, nil) // a load
	if a.lastRead != 3 {
		t.Fatalf("unexpected rows read; got %d; want 3 (a load)", a.lastRead)
	}
	now = e.advance(time.Second)
	e.insert(ctx, t,
		usageRecord{app: appD, day: "2026-10-20", part: 1, version: 60, created: 90, updatedAt: now.Add(-time.Minute)},
		usageRecord{app: appE, day: "2026-10-20", part: 2, version: 7, created: 95, updatedAt: now}, // no position: by updated_at
	)
	e.check(ctx, t, a, false, map[string]int64{
		fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appD): 90,
		fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", appE): 95,
	})
	e.requireTruth(ctx, t, a)
}

// TestAlertsPositionsMatchTable: aggregators flush random rows of three
// partitions as immeter aggregate does (versions above the stored position,
// the position stored once the rows are in), with clocks up to a minute
// off, flushes whose rows land on either side of a check, and crashes that
// leave a flush's rows without its position (replayed from the stored
// position, with lower versions than those already read); after every
// incremental check the alerter's copy equals the table's argMax.
func TestAlertsPositionsMatchTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	rng := mrand.New(mrand.NewPCG(3, 4))
	days := []string{"2026-09-30", "2026-10-01", "2026-10-20"}
	const parts = 3
	stored := make([]uint64, parts) // the stored position
	next := make([]uint64, parts)   // the position the partition's aggregator is at
	for p := range parts {
		stored[p] = uint64(1000 * (p + 1))
		next[p] = stored[p]
		e.storePosition(ctx, t, int32(p), stored[p])
	}
	flushRows := func(p int) []usageRecord {
		next[p] += uint64(1 + rng.IntN(20))
		var rs []usageRecord
		for range 1 + rng.IntN(8) {
			app, day := 1400000600+uint32(rng.IntN(30)), rng.IntN(len(days))
			// A row's counters are those of its offsets: the same at the
			// same version, as when a replay flushes where a crashed flush did.
			c := mrand.New(mrand.NewPCG(uint64(app)<<8|uint64(day)<<4|uint64(p), next[p]))
			rs = append(rs, usageRecord{app: app, day: days[day], part: int32(p),
				version: next[p], logins: uint64(c.IntN(50)), community: uint64(c.IntN(1000)), created: uint64(c.IntN(60)),
				updatedAt: e.Now().Add(-time.Duration(rng.IntN(60000)) * time.Millisecond)})
		}
		return rs
	}
	for p := range parts {
		e.insert(ctx, t, flushRows(p)...)
		stored[p] = next[p]
		e.storePosition(ctx, t, int32(p), stored[p])
	}
	a := e.alerter(ctx, t)
	if _, err := a.Check(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.requireTruth(ctx, t, a)
	landing := make([][]usageRecord, parts) // the rest of a flush, landing after the next check, by partition
	sweeps := 0
	for round := range 20 {
		e.advance(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		// Every few rounds a sweep's load is made before the round's
		// flushes and taken by its check (as Run does while checks go
		// on): the check must still read what the flushes wrote.
		var sweep *loadedUsage
		if round%4 == 1 {
			var err error
			if sweep, err = a.sweepLoad(ctx, e.Now()); err != nil {
				t.Fatal(err)
			}
			e.advance(time.Duration(rng.IntN(1000)) * time.Millisecond)
		}
		for p := range parts {
			if len(landing[p]) > 0 { // the rest of a flush split by the last check
				e.insert(ctx, t, landing[p]...)
				landing[p] = nil
				stored[p] = next[p]
				e.storePosition(ctx, t, int32(p), stored[p])
			}
			switch rng.IntN(4) {
			case 0: // a flush
				e.insert(ctx, t, flushRows(p)...)
				stored[p] = next[p]
				e.storePosition(ctx, t, int32(p), stored[p])
			case 1: // a flush that crashes before its position: replayed from the stored one
				e.insert(ctx, t, flushRows(p)...)
				next[p] = stored[p]
			case 2: // a flush whose rows land on both sides of the check
				rs := flushRows(p)
				k := rng.IntN(len(rs) + 1)
				e.insert(ctx, t, rs[:k]...)
				landing[p] = rs[k:]
			}
		}
		if _, err := a.check(ctx, false, sweep); err != nil {
			t.Fatal(err)
		}
		if sweep != nil {
			if !sweep.used {
				t.Fatalf("round %d: the sweep's load was not taken", round)
			}
			sweeps++
		}
		t.Logf("round %d: %d apps, %d rows held, %d read", round, len(a.usage), a.usageRows(), a.lastRead)
		e.requireTruth(ctx, t, a)
	}
	if sweeps != 5 {
		t.Errorf("unexpected sweeps taken; got %d; want 5", sweeps)
	}
}

// TestAlertsPositionsLateUsers: with stored positions, an app whose logins
// (groups) changed has its exact MAU (live groups) read by every check until
// its partition's stored position reaches the version of the row that
// changed, however long its user_days (live_group_changes) rows take to land
// (a flush stores its position only once they are in), and no longer after
// that.
func TestAlertsPositionsLateUsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appG, appH, appK = 1400000701, 1400000702, 1400000703
	e.insert(ctx, t, usageRecord{app: appG, day: "2026-10-20", part: 0, version: 100, logins: 10, updatedAt: e.Now().Add(-time.Hour)})
	e.storePosition(ctx, t, 0, 100)
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)

	// A flush (version 110) lands its counters; its users and live groups
	// land more than overlap later, along with its position.
	now := e.advance(time.Second)
	e.insert(ctx, t,
		usageRecord{app: appG, day: "2026-10-20", part: 0, version: 110, logins: 80, updatedAt: now},
		usageRecord{app: appH, day: "2026-10-20", part: 0, version: 110, created: 8, updatedAt: now},
		usageRecord{app: appK, day: "2026-10-20", part: 0, version: 110, logins: 90, updatedAt: now},
	)
	for range 4 {
		e.check(ctx, t, a, false, nil)
		if a.lastMAU != 2 {
			t.Fatalf("unexpected exact MAU reads; got %d; want 2 (appG, appK)", a.lastMAU)
		}
		e.advance(overlap / 2)
	}
	e.users(ctx, t, appG, "2026-10-20", 1, 80)
	e.users(ctx, t, appK, "2026-10-20", 1, 50)
	b, err := e.conn.PrepareBatch(ctx, sqlTestInsertLive)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if err := b.Append(uint32(appH), fmt.Sprintf("live-%d", i), "create", now.UTC().Truncate(time.Second), uint32(0), fmt.Sprintf("c-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	e.storePosition(ctx, t, 0, 110)
	e.advance(time.Second)
	e.check(ctx, t, a, false, map[string]int64{
		fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appG):   80,
		fmt.Sprintf("%d:live_groups:current:developer:80", appH): 8,
	})
	// The check after reads the position (during the one above), and is the
	// last to read appK's exact MAU (50: below the level); then none.
	for _, want := range []int{1, 0} {
		e.advance(time.Second)
		e.check(ctx, t, a, false, nil)
		if a.lastMAU != want {
			t.Fatalf("unexpected exact MAU reads; got %d; want %d", a.lastMAU, want)
		}
	}
}

// TestAlertsPositionsLoadInFlight: a load that reads a row above its
// partition's position (a flush in flight, stamped by an aggregator whose
// clock is a minute behind) checks the app again until the position
// reaches it, so users landing with the position are alerted.
func TestAlertsPositionsLoadInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appL = 1400000801
	e.storePosition(ctx, t, 0, 100)
	e.insert(ctx, t, usageRecord{app: appL, day: "2026-10-20", part: 0, version: 110, logins: 85, updatedAt: e.Now().Add(-time.Minute)})
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)
	for range 3 {
		e.advance(overlap / 2)
		e.check(ctx, t, a, false, nil)
	}
	e.users(ctx, t, appL, "2026-10-20", 1, 80)
	e.storePosition(ctx, t, 0, 110)
	e.advance(time.Second)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appL): 80})
}

// TestAlertsReadNewParts: on a table that is not replicated, an
// incremental read reads only the parts with a block above those listed
// before the previous read began. Row X (September, a partition without a
// stored position, stamped a day ahead, so that every read's updated_at
// condition keeps it) is read by the load, then no more: its part is below
// the blocks listed before the load. Row Y, in a new part of October, is
// read by the next check, alone. Without the part condition every read
// returned X again.
func TestAlertsReadNewParts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	t0 := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	e := newAlertTestEnv(ctx, t, t0)
	const appX, appY = 1400000301, 1400000302
	e.insert(ctx, t, usageRecord{app: appX, day: "2026-09-30", part: 5, version: 1, logins: 1, updatedAt: t0.Add(24 * time.Hour)})
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, false, nil) // the first check loads
	if a.lastRead != 1 || !a.pruneParts {
		t.Fatalf("load: read %d rows, parts pruned %v; want 1 and true (engine ReplacingMergeTree)", a.lastRead, a.pruneParts)
	}
	e.advance(time.Second)
	e.check(ctx, t, a, false, nil)
	if a.lastRead != 0 {
		t.Fatalf("a check with no new part read %d rows; want 0", a.lastRead)
	}
	now := e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appY, day: "2026-10-20", part: 5, version: 2, logins: 1, updatedAt: now})
	e.check(ctx, t, a, false, nil)
	if a.lastRead != 1 || a.usage[appY] == nil {
		t.Fatalf("a check after a new part read %d rows (app %d held: %v); want 1, the new row", a.lastRead, appY, a.usage[appY] != nil)
	}
	e.requireTruth(ctx, t, a)
}

// TestAlertsMAUBound: once an exact MAU read has seen the users of every
// login held, the exact MAU is read again only when the count read plus the
// logins since may reach the lowest open level. appM's 50 users logged in
// 100 times: after 20 more logins (at most 70 users) its MAU is not read,
// after 10 more (at most 80) it is, and its 80th user is alerted at once;
// the bound then keeps it from being read for the 100% level. A read whose
// logins' users had not all landed (appN's flush, of a partition with no
// stored position yet, so covered only overlap later) sets no bound, so appN
// is alerted when its users land. Without the bound every check here read
// appM's MAU.
func TestAlertsMAUBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appM, appN, appP = 1400000901, 1400000902, 1400000903
	e.insert(ctx, t, usageRecord{app: appM, day: "2026-10-19", part: 0, version: 100, logins: 100, updatedAt: e.Now().Add(-time.Hour)})
	e.users(ctx, t, appM, "2026-10-19", 1, 50)
	e.storePosition(ctx, t, 0, 100)
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)
	requireMAUReads := func(want int, why string) {
		t.Helper()
		if a.lastMAU != want {
			t.Fatalf("unexpected exact MAU reads; got %d; want %d (%s)", a.lastMAU, want, why)
		}
	}
	requireMAUReads(1, "the load: 100 logins")

	// Each flush lands its rows and users, then stores its position.
	flush := func(app uint32, part int32, version, logins uint64, from, to int) {
		t.Helper()
		e.insert(ctx, t, usageRecord{app: app, day: "2026-10-20", part: part, version: version, logins: logins, updatedAt: e.Now()})
		e.users(ctx, t, app, "2026-10-20", from, to)
		e.storePosition(ctx, t, part, version)
	}
	e.advance(time.Second)
	flush(appM, 0, 110, 20, 51, 70)
	e.check(ctx, t, a, false, nil)
	requireMAUReads(0, "at most 50+20 users")
	e.advance(time.Second)
	flush(appM, 0, 120, 30, 71, 80)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appM): 80})
	requireMAUReads(1, "at most 50+30 users")
	for range 2 {
		e.advance(time.Second)
		e.check(ctx, t, a, false, nil)
		requireMAUReads(0, "the 100% level: at most 80 users")
	}

	// appN's counters land a check before its users and its position.
	now := e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appN, day: "2026-10-20", part: 1, version: 10, logins: 90, updatedAt: now})
	e.check(ctx, t, a, false, nil)
	requireMAUReads(1, "appN: 90 logins, 0 users seen")
	e.users(ctx, t, appN, "2026-10-20", 1, 85)
	e.storePosition(ctx, t, 1, 10)
	e.advance(time.Second)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:mau_quota:2026-10:developer:80", appN): 85})

	// appP logs in 20 times and gains 2 users between checks, and each
	// flush's position is stored only after the next check: no check covers
	// its own read of appP. The logins held after a read bound the MAU once
	// a later check covers that read: the third check's exact MAU (12) with
	// the first's logins (80) keeps the fourth from reading (at most 72
	// users), the fifth reads (92), and its bound (16 with the third's 120
	// logins) keeps the sixth from reading (76).
	for k, want := range []int{1, 1, 1, 0, 1, 0} {
		now := e.advance(time.Second)
		version := uint64(140 + 10*k)
		e.insert(ctx, t, usageRecord{app: appP, day: "2026-10-20", part: 0, version: version, logins: uint64(80 + 20*k), updatedAt: now})
		e.users(ctx, t, appP, "2026-10-20", 1, 8+2*k)
		e.check(ctx, t, a, false, nil)
		requireMAUReads(want, fmt.Sprintf("appP, check %d", k+1))
		e.storePosition(ctx, t, 0, version)
	}
}

// live inserts changes of app's live groups: each group of groups gets op
// at at.
func (e *alertTestEnv) live(ctx context.Context, t *testing.T, app uint32, op string, at time.Time, groups ...string) {
	t.Helper()
	b, err := e.conn.PrepareBatch(ctx, sqlTestInsertLive)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if err := b.Append(app, g, op, at.UTC().Truncate(time.Second), uint32(0), op+"-"+g); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// TestAlertsLiveBound: once an app's live groups are read in a covered
// check, they are read again only when that count plus the groups created
// since may reach the lowest open level, and the alert still carries the
// exact count; a read that may not have seen its live_group_changes rows
// bounds nothing.
func TestAlertsLiveBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const appL, appQ = 1400000911, 1400000912
	groups := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprintf("live-%d", i))
		}
		return out
	}
	// A Developer app may have 10 live groups: 80% is 8.
	e.insert(ctx, t, usageRecord{app: appL, day: "2026-10-19", part: 0, version: 100, created: 20, updatedAt: e.Now().Add(-time.Hour)})
	e.live(ctx, t, appL, "create", e.Now().Add(-time.Hour), groups(1, 3)...)
	e.storePosition(ctx, t, 0, 100)
	a := e.alerter(ctx, t)
	e.check(ctx, t, a, true, nil)
	requireLiveReads := func(want int, why string) {
		t.Helper()
		if a.lastLive != want {
			t.Fatalf("unexpected live-group reads; got %d; want %d (%s)", a.lastLive, want, why)
		}
	}
	requireLiveReads(1, "the load")

	// Each flush lands its row and live groups, then stores its position.
	flush := func(app uint32, part int32, version, created uint64, live []string) {
		t.Helper()
		now := e.advance(time.Second)
		e.insert(ctx, t, usageRecord{app: app, day: "2026-10-20", part: part, version: version, created: created, updatedAt: now})
		if len(live) > 0 {
			e.live(ctx, t, app, "create", now, live...)
		}
		e.storePosition(ctx, t, part, version)
	}
	flush(appL, 0, 110, 3, nil) // 3 groups of other types
	e.check(ctx, t, a, false, nil)
	requireLiveReads(0, "at most 3+3 live groups")
	flush(appL, 0, 120, 5, groups(4, 5))
	e.check(ctx, t, a, false, nil)
	requireLiveReads(1, "at most 3+5 live groups")
	// That read is covered by the next check (the position of its flush
	// was stored before it began), which reads again (the bound is still
	// 3+5) and bounds the live groups by 5 and the 25 groups created.
	e.advance(time.Second)
	e.check(ctx, t, a, false, nil)
	requireLiveReads(1, "at most 3+5 live groups, read covered")
	flush(appL, 0, 130, 7, groups(6, 7))
	e.check(ctx, t, a, false, nil)
	requireLiveReads(0, "at most 5+2 live groups")
	flush(appL, 0, 140, 8, groups(8, 8))
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:live_groups:current:developer:80", appL): 8})
	requireLiveReads(1, "at most 5+3 live groups")
	flush(appL, 0, 150, 9, nil)
	e.check(ctx, t, a, false, nil)
	requireLiveReads(0, "the 100% level: at most 5+4 live groups")

	// appQ's counters land a check before its live groups and its
	// position: the read that found none bounds nothing.
	now := e.advance(time.Second)
	e.insert(ctx, t, usageRecord{app: appQ, day: "2026-10-20", part: 1, version: 10, created: 9, updatedAt: now})
	e.check(ctx, t, a, false, nil)
	requireLiveReads(1, "appQ: 9 groups created, no live group seen")
	e.live(ctx, t, appQ, "create", now, groups(1, 9)...)
	e.storePosition(ctx, t, 1, 10)
	e.advance(time.Second)
	e.check(ctx, t, a, false, map[string]int64{fmt.Sprintf("%d:live_groups:current:developer:80", appQ): 9})
}

// TestAlertsSweepInRun: Run's sweep, whose load is made while the checks go
// on, finds a row that no incremental read can see (a version at or below
// its partition's stored position, as when an insert completes after a
// later flush of its partition stored its position) and alerts it.
func TestAlertsSweepInRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	e := newAlertTestEnv(ctx, t, time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const app = 1400000951
	e.insert(ctx, t, usageRecord{app: app, day: "2026-10-19", part: 0, version: 100, created: 5, updatedAt: e.Now().Add(-time.Hour)})
	e.storePosition(ctx, t, 0, 100)
	a := e.alerter(ctx, t)
	a.cfg.Interval, a.cfg.Sweep = 20*time.Millisecond, time.Hour
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(rctx)
	}()
	defer func() { stop(); <-done }()
	waitPublished := func(want int, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for e.published(ctx, t) < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := e.published(ctx, t); got != want {
			t.Fatalf("unexpected alerts on the topic; got %d; want %d", got, want)
		}
	}
	time.Sleep(500 * time.Millisecond) // the first load and ~20 checks
	e.insert(ctx, t, usageRecord{app: app, day: "2026-10-20", part: 0, version: 50, created: 85, updatedAt: e.Now().Add(-time.Hour)})
	time.Sleep(500 * time.Millisecond)
	waitPublished(0, 0) // not seen by the incremental checks
	e.advance(2 * time.Hour)
	waitPublished(1, 20*time.Second)
	id := fmt.Sprintf("%d:daily_net_groups:2026-10-20:developer:80", app)
	if got := e.read(ctx, t); got[0].ID != id || got[0].Value != 85 {
		t.Errorf("unexpected alert %s value %d; want %s value 85", got[0].ID, got[0].Value, id)
	}
}

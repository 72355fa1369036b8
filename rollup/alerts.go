package rollup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// AlertConfig configures an Alerter. Start from DefaultAlertConfig: a zero
// field means zero, not the default (only a nil Location, Prices, Now or
// Logger takes the default).
type AlertConfig struct {
	Brokers  []string              // KAFKA_BROKERS; required
	Security schemas.KafkaSecurity // SASL and TLS towards the brokers; default plaintext
	Topic    string                // ALERTS_TOPIC; default im.usage.alerts
	Location *time.Location        // billing time zone (BILLING_TZ); default +08:00
	Prices   *PriceBook            // PLANS_FILE (limits and alert levels); default DefaultPriceBook()

	// Interval is how often the daily_usage rows written since the
	// previous check are read and the apps whose usage changed checked
	// (ALERT_INTERVAL). Default 1s; must be > 0.
	Interval time.Duration
	// Sweep is how often the usage of the open and the previous month is
	// loaded again and every app with usage in them checked, changed or not
	// (ALERT_SWEEP): it catches what the incremental read cannot see (see
	// README). Default 10m; must be > 0.
	Sweep time.Duration

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // nil: slog.Default() when the value is made (after the command set the log level)
}

// DefaultAlertConfig returns the defaults.
func DefaultAlertConfig() AlertConfig {
	return AlertConfig{
		Topic:    schemas.AlertsTopic,
		Location: time.FixedZone(schemas.DefaultTimezone, 8*3600),
		Interval: time.Second,
		Sweep:    10 * time.Minute,
		Now:      time.Now,
	}
}

func (c *AlertConfig) fill() {
	d := DefaultAlertConfig()
	if c.Location == nil {
		c.Location = d.Location
	}
	if c.Prices == nil {
		c.Prices = DefaultPriceBook()
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first bad field by the name of its setting.
func (c *AlertConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: required")
	case c.Topic == "":
		return errors.New("ALERTS_TOPIC: must not be empty")
	case c.Interval <= 0:
		return fmt.Errorf("ALERT_INTERVAL: must be > 0; got %s", c.Interval)
	case c.Sweep <= 0:
		return fmt.Errorf("ALERT_SWEEP: must be > 0; got %s", c.Sweep)
	}
	return nil
}

// overlap is how far before the start of the previous read of daily_usage
// a check reads again (see readUsage for why no row is missed): the longest
// a row may take from its updated_at (the aggregator's clock when its flush
// began, truncated to the second) to being visible in ClickHouse on the
// alerter's clock. The apps with a row written in that window are checked
// again, which also covers user_days rows that land after the daily_usage
// row of the same flush.
const overlap = 10 * time.Second

// Alerter publishes usage alerts: when an app's exact usage reaches a level
// (a percentage) of a limit of its edition, it stores the alert in
// ClickHouse (alerts), then publishes it on the alerts topic, then marks it
// published (alerts_published). Each (app, kind, period, edition, level) is
// alerted once, with one content. One Alerter runs per database.
type Alerter struct {
	cfg  AlertConfig
	conn driver.Conn
	w    *kafka.Writer

	known   map[string]bool // ids stored or pending: never alerted again
	oldest  string          // no id of a period before this month is in known
	pending []pendingAlert  // detected, not yet marked published

	// usage holds, by app, the newest version read of each daily_usage row
	// of month and the month before, sorted by day then partition; nil
	// until the first load. readAt is when the last successful read began
	// (the alerter's clock): the next reads the rows written since
	// readAt-overlap of the partitions without a position.
	usage  map[uint32]*appUsage
	month  schemas.Month
	readAt time.Time
	// positions are the partitions' stored positions read before the last
	// successful read began: the next reads, of those partitions, only the
	// rows with a higher version. nextPositions were read after the last
	// read, during its check (nil: not yet), for the next. lastRead is how
	// many rows the last read returned.
	positions     map[int32]uint64
	nextPositions map[int32]uint64
	lastRead      int
	lastMAU       int              // apps whose exact MAU the last check read
	lastLive      int              // apps whose live groups the last check read
	exactRead     []exactRead      // the exact MAU and live-group reads of the check under way
	flushTook     [3]time.Duration // the last flush: storing, publishing, marking published
	held          int              // rows in usage
	// blocksFrom is the lowest block number of daily_usage that the last
	// successful read may not have seen (one above the highest listed
	// before it began); pruneParts says the next reads only the parts with
	// such blocks: the table's blocks are numbered as they become visible
	// (see readUsage).
	blocksFrom uint64
	pruneParts bool
	// uncovered are the reads whose logins and group changes may still lack
	// their user_days or live_group_changes rows, oldest first; coveredAt
	// is when (readAt, unix nanoseconds) the last read known to be covered
	// began: an app whose logins (groups) changed after it is checked.
	uncovered []readSpan
	coveredAt int64
	recent    map[uint32]recentApp // apps whose logins or groups changed after coveredAt
	// unchecked are the apps with a newer row that no check has finished
	// with yet (every app when uncheckedAll), and whether their logins or
	// groups changed (changedLogins, changedGroups): a failed check leaves
	// them for the next.
	unchecked    map[uint32]appToCheck
	uncheckedAll bool

	published *prometheus.CounterVec // alerts acknowledged by Kafka, by kind
}

type pendingAlert struct {
	alert  schemas.Alert
	json   []byte
	stored bool
}

// NewAlerter returns an Alerter reading and writing through conn (migrated).
func NewAlerter(cfg AlertConfig, conn driver.Conn) (*Alerter, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr, err := cfg.Security.Transport("immeter-alerts")
	if err != nil {
		return nil, err
	}
	tr.MetadataTTL = time.Second
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immeter_alerts_published_total",
		Help: "Usage alerts acknowledged by Kafka on the alerts topic, by kind (mau_quota, community_allowance, daily_net_groups, live_groups); a republished alert counts again.",
	}, []string{"kind"})
	for _, k := range []string{schemas.AlertMAUQuota, schemas.AlertCommunityAllowance, schemas.AlertDailyNetGroups, schemas.AlertLiveGroups} {
		published.WithLabelValues(k)
	}
	return &Alerter{cfg: cfg, conn: conn, known: map[string]bool{}, published: published, w: &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		Transport:    tr,
		BatchTimeout: time.Millisecond,
		BatchSize:    1000,
	}}, nil
}

// Close releases the Kafka writer.
func (a *Alerter) Close() error { return a.w.Close() }

// Collector returns the alerter's metrics.
func (a *Alerter) Collector() prometheus.Collector { return a.published }

// Run checks for crossings until ctx is done: first it republishes stored
// alerts that Kafka never acknowledged, loads the usage and checks every
// app; then, every Interval, the apps whose usage rows were written since
// the previous check, and every Sweep it loads the usage again and checks
// all apps. A failed check is retried at the next tick.
func (a *Alerter) Run(ctx context.Context) error {
	for {
		err := a.Start(ctx)
		if err == nil {
			break
		}
		a.cfg.Logger.Warn("alerts: start; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.cfg.Interval):
		}
	}
	// A sweep loads the usage while the checks go on (a load of a month of
	// 100k apps takes seconds), and the first check after it takes the load
	// and reads what was written since it began. The first load, and those
	// of a new month or after positions fell, are made by the check itself.
	var swept time.Time // zero: a full check first
	var loading chan loadResult
	var loaded *loadedUsage
	for {
		began, start := time.Now(), a.cfg.Now()
		due := start.Sub(swept) >= a.cfg.Sweep
		full := due && a.usage == nil
		if due && !full && loading == nil && loaded == nil {
			loading = make(chan loadResult, 1)
			go func() {
				t0 := time.Now()
				l, err := a.sweepLoad(ctx, start)
				loading <- loadResult{l, time.Since(t0), err}
			}()
		}
		select {
		case r := <-loading:
			loading = nil
			if r.err != nil {
				a.cfg.Logger.Warn("alerts: sweep", "err", r.err) // made again at the next check
			} else {
				loaded = r.l
				a.cfg.Logger.Debug("alerts: sweep loaded", "rows", r.l.rows, "apps", len(r.l.usage), "took", r.took)
			}
		default:
		}
		if _, err := a.check(ctx, full, loaded); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.cfg.Logger.Warn("alerts: check", "err", err)
		} else if full {
			swept = start
		}
		if loaded != nil && loaded.used {
			swept, loaded = loaded.began, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.cfg.Interval - time.Since(began)):
		}
	}
}

// Start loads the ids of the stored alerts and republishes, byte for byte,
// those never marked published (a crash between storing and publishing).
func (a *Alerter) Start(ctx context.Context) error {
	rows, err := a.conn.Query(ctx, sqlAlertsStored)
	if err != nil {
		return fmt.Errorf("read alerts: %w", err)
	}
	known := map[string]bool{}
	var pending []pendingAlert
	for rows.Next() {
		var id, body string
		var published uint8
		if err := rows.Scan(&id, &body, &published); err != nil {
			rows.Close()
			return fmt.Errorf("read alerts: %w", err)
		}
		known[id] = true
		if published == 0 {
			var al schemas.Alert
			if err := json.Unmarshal([]byte(body), &al); err != nil {
				rows.Close()
				return fmt.Errorf("read alerts: %s: %w", id, err)
			}
			pending = append(pending, pendingAlert{alert: al, json: []byte(body), stored: true})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read alerts: %w", err)
	}
	for _, p := range a.pending { // detected before a failed start
		known[p.alert.ID] = true
		if !p.stored { // the stored ones were read again above
			pending = append(pending, p)
		}
	}
	a.known = known
	a.pending = pending
	if len(pending) > 0 {
		a.cfg.Logger.Info("alerts: republishing unacknowledged alerts", "count", len(pending))
	}
	return a.flush(ctx)
}

// Check publishes an alert for every level crossed and not alerted yet. When
// full is false it reads the daily_usage rows written since the previous
// check and checks the apps they belong to; when full is true (and on the
// first check, and the first of a month) it loads the usage of the open and
// the previous month again and checks every app with usage in them. It
// returns how many alerts it published.
func (a *Alerter) Check(ctx context.Context, full bool) (int, error) {
	return a.check(ctx, full, nil)
}

// check is Check, taking loaded (a sweep's load made meanwhile; nil: none)
// as the usage held before it reads the rows written since it began.
func (a *Alerter) check(ctx context.Context, full bool, loaded *loadedUsage) (int, error) {
	if err := a.flush(ctx); err != nil { // what an earlier check could not finish
		return 0, err
	}
	now := a.cfg.Now()
	a.forget(schemas.MonthOf(now, a.cfg.Location).Prev().String())
	t0 := time.Now()
	// The plans do not depend on the usage: read them meanwhile.
	var apps []appToCheck
	var all bool
	var plans map[uint32][]planChange
	var tRead, tPlans time.Duration
	err := concurrently(ctx, func(ctx context.Context) (err error) {
		apps, all, err = a.readUsage(ctx, now, full, loaded)
		tRead = time.Since(t0)
		return err
	}, func(ctx context.Context) (err error) {
		plans, err = readPlans(ctx, a.conn, now, 0)
		tPlans = time.Since(t0)
		return err
	})
	if err != nil {
		return 0, err
	}
	t1 := time.Now()
	// The positions the next read starts from: read meanwhile, off its path
	// (any read between this read and the next will do, see readUsage).
	posDone := make(chan struct{})
	var next map[int32]uint64
	go func() {
		defer close(posDone)
		var err error
		if next, err = a.readPositions(ctx); err != nil {
			next = nil // read again by the next check
		}
	}()
	alerts, err := a.detect(ctx, apps, all, now, plans)
	<-posDone
	a.nextPositions = next
	if err != nil {
		return 0, err
	}
	a.cover(now)
	// The exact reads of this check bound the MAU (live groups) with the
	// logins (groups created) of the reads it covered: their user_days
	// (live_group_changes) rows were in (bound).
	for _, r := range a.exactRead {
		u := r.u
		if r.live {
			if u.live == nil {
				u.live = &bound{}
			}
			u.live.set(r.exact, r.counter, u.groupsAt <= a.coveredAt, a.coveredAt, now.UnixNano())
			continue
		}
		if u.mau == nil {
			u.mau = &[2]bound{}
		}
		u.mau[r.i].set(r.exact, r.counter, u.loginsAt <= a.coveredAt, a.coveredAt, now.UnixNano())
	}
	a.exactRead = a.exactRead[:0]
	tDetect := time.Since(t1)
	a.unchecked, a.uncheckedAll = make(map[uint32]appToCheck, len(a.unchecked)), false // the alerts are pending: flushed below or by the next check
	a.flushTook = [3]time.Duration{}
	defer func() {
		a.cfg.Logger.Debug("alerts: check", "full", full, "apps", len(apps), "app_days", a.held, "rows_read", a.lastRead, "alerts", len(alerts),
			"daily_usage", tRead, "plan_changes", tPlans, "detect", tDetect,
			"store", a.flushTook[0], "publish", a.flushTook[1], "mark", a.flushTook[2], "took", time.Since(t0))
	}()
	gen := a.cfg.Now().UTC().Truncate(time.Second)
	for _, al := range alerts {
		al.GeneratedAt = gen
		body, err := json.Marshal(al)
		if err != nil {
			return 0, err
		}
		a.known[al.ID] = true
		a.pending = append(a.pending, pendingAlert{alert: al, json: body})
	}
	if err := a.flush(ctx); err != nil {
		return 0, err
	}
	if len(alerts) > 0 {
		a.cfg.Logger.Info("alerts: published", "count", len(alerts))
	}
	return len(alerts), nil
}

// forget drops the known ids of periods before month (YYYY-MM), which are
// no longer checked; live-group ids ("current") stay.
func (a *Alerter) forget(month string) {
	if a.oldest == month {
		return
	}
	for id := range a.known {
		if p := alertPeriod(id); p != schemas.AlertLivePeriod && p < month {
			delete(a.known, id)
		}
	}
	a.oldest = month
}

// alertPeriod returns the period part of an alert id.
func alertPeriod(id string) string {
	parts := strings.SplitN(id, ":", 4)
	if len(parts) < 4 {
		return ""
	}
	return parts[2]
}

// flush stores the pending alerts not stored yet, publishes them all, and
// marks them published. On an error the pending alerts stay, with the same
// content, for the next call.
func (a *Alerter) flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return nil
	}
	t0 := time.Now()
	var unstored []*pendingAlert
	for i := range a.pending {
		if !a.pending[i].stored {
			unstored = append(unstored, &a.pending[i])
		}
	}
	if len(unstored) > 0 {
		b, err := a.conn.PrepareBatch(ctx, sqlInsertAlert)
		if err != nil {
			return fmt.Errorf("write alerts: %w", err)
		}
		for _, p := range unstored {
			al := p.alert
			if err := b.Append(al.ID, al.App, al.Kind, al.Period, al.Edition, uint16(al.Level), al.Value, uint64(al.Limit),
				al.At.UTC().Truncate(time.Second), string(p.json), al.GeneratedAt); err != nil {
				return fmt.Errorf("write alerts: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("write alerts: %w", err)
		}
		for _, p := range unstored {
			p.stored = true
		}
	}
	msgs := make([]kafka.Message, len(a.pending))
	for i, p := range a.pending {
		msgs[i] = kafka.Message{
			Key:     []byte(strconv.FormatUint(uint64(p.alert.App), 10)),
			Value:   p.json,
			Headers: []kafka.Header{{Key: "immeter-alert-id", Value: []byte(p.alert.ID)}},
		}
	}
	t1 := time.Now()
	if err := a.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish to %s: %w", a.cfg.Topic, err)
	}
	t2 := time.Now()
	for _, p := range a.pending {
		a.published.WithLabelValues(p.alert.Kind).Inc()
	}
	b, err := a.conn.PrepareBatch(ctx, sqlInsertAlertPublished)
	if err != nil {
		return fmt.Errorf("write alerts_published: %w", err)
	}
	at := a.cfg.Now().UTC().Truncate(time.Second)
	for _, p := range a.pending {
		if err := b.Append(p.alert.App, p.alert.ID, at); err != nil {
			return fmt.Errorf("write alerts_published: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write alerts_published: %w", err)
	}
	a.pending = a.pending[:0]
	a.flushTook = [3]time.Duration{t1.Sub(t0), t2.Sub(t1), time.Since(t2)}
	return nil
}

// The statements of the alerter.
const (
	sqlAlertsStored = `SELECT id, any(record), max(id IN (SELECT id FROM alerts_published)) FROM alerts GROUP BY id`

	sqlInsertAlert = `INSERT INTO alerts
		(id, app, kind, period, edition, level, value, quota, at, record, generated_at)`

	sqlInsertAlertPublished = `INSERT INTO alerts_published (app, id, published_at)`

	// sqlAlertPositions: the stored position of each source partition
	// (consumer_offsets.next_offset): the lowest over the consumer groups and
	// topics that have one, should the table hold more than the one source.
	sqlAlertPositions = `SELECT partition, min(next) FROM (
	SELECT consumer_group, topic, partition, max(next_offset) AS next FROM consumer_offsets
	GROUP BY consumer_group, topic, partition
)
GROUP BY partition`

	// sqlAlertUsage: args parts, bounds (the lowest version that can be new
	// of each partition listed), parts again, since (unix seconds: the
	// partitions not listed are read from the rows written at or after it;
	// 0 for every row), from, to, block (only the parts holding a block
	// numbered at or above it are read: ClickHouse picks them by name before
	// it reads a row; 0 for every part). The newest version, among those
	// rows, of each daily_usage row (app, day, src_partition) of the days
	// from..to, and when it was last written: the conditions read three
	// small columns of the parts' rows, the others only for the rows they
	// keep. The day (days since 1970) and the time (unix seconds) come as
	// integers, which the driver scans without building a time.Time.
	sqlAlertUsage = `SELECT app, toUInt16(day), src_partition, max(version),
	argMax(logins, version), argMax(messages_community, version), argMax(groups_created, version), argMax(groups_dissolved, version),
	toUInt32(max(updated_at))
FROM daily_usage
PREWHERE version >= transform(src_partition, ?, ?, toUInt64(0)) AND (has(?, src_partition) OR updated_at >= toDateTime(?))
WHERE day >= toDate(?) AND day <= toDate(?) AND toUInt64OrZero(splitByChar('_', _part)[3]) >= ?
GROUP BY app, day, src_partition`

	// sqlAlertBlocks: how many active parts daily_usage has, the highest
	// block number in them (a part is named partition_min_max_level), and
	// its engine.
	sqlAlertBlocks = `SELECT count(), max(toUInt64OrZero(splitByChar('_', name)[3])), any(engine) FROM system.parts
WHERE database = currentDatabase() AND table = 'daily_usage' AND active`

	// sqlAlertMAU: args from, to, apps (a clickhouse.GroupSet).
	sqlAlertMAU = `SELECT app, uniqExact(user) FROM user_days
WHERE day >= toDate(?) AND day <= toDate(?) AND app IN ?
GROUP BY app`

	// sqlAlertLiveGroups: arg before (unix seconds). A group exists when
	// its latest change is a creation. Every app's: a load's.
	sqlAlertLiveGroups = `SELECT app, countIf(last_op = 'create') FROM (
	SELECT app, group_id, argMax(op, (at, at_nanos, id)) AS last_op
	FROM live_group_changes WHERE at < toDateTime(?)
	GROUP BY app, group_id
)
GROUP BY app`

	// sqlAlertLiveGroupsOf: args apps (a clickhouse.GroupSet), before (unix
	// seconds). sqlAlertLiveGroups of the apps listed.
	sqlAlertLiveGroupsOf = `SELECT app, countIf(last_op = 'create') FROM (
	SELECT app, group_id, argMax(op, (at, at_nanos, id)) AS last_op
	FROM live_group_changes WHERE app IN ? AND at < toDateTime(?)
	GROUP BY app, group_id
)
GROUP BY app`

	sqlAlertsOfApp = `SELECT any(record) FROM alerts WHERE app = ? GROUP BY id ORDER BY id`
)

// dayFigures are the counters of one app's day that alerts watch.
type dayFigures struct {
	logins, community, created, dissolved uint64
}

func (f *dayFigures) add(g dayFigures) {
	f.logins += g.logins
	f.community += g.community
	f.created += g.created
	f.dissolved += g.dissolved
}

// usageRow is the newest version the alerter has read of one daily_usage
// row of an app, (day, src_partition): 48 bytes.
type usageRow struct {
	day     schemas.Day
	part    int32
	version uint64
	dayFigures
}

func compareRows(x, y usageRow) int {
	if x.day != y.day {
		return int(x.day) - int(y.day)
	}
	return int(x.part) - int(y.part)
}

// appUsage is what the alerter holds of an app: its rows, sorted by day
// then partition, and when (unix nanoseconds) its logins and its groups
// last changed, which decide whether user_days and live_group_changes are
// read for it; and, once its exact MAU or live groups have been read, a
// bound on them.
type appUsage struct {
	rows               []usageRow
	loginsAt, groupsAt int64
	mau                *[2]bound // the MAU by month, the one before and the open one, over the month's logins; nil: none
	live               *bound    // the live groups, over the groups created in the rows held; nil: none
}

// bound bounds a figure that grows only with a counter held: an app's MAU
// of a month, which only its logins of the month raise (each user a read
// did not count adds at least one login), and its live groups, which only
// group creations raise (a dissolution lowers them; a creation raises
// groups_created of its day). exact is an exact read of the figure and
// counter the counter held after a read whose user_days (live_group_changes)
// rows that exact read saw, all of them (the read covered by the check, see
// Check and cover). Counters never fall, so the figure is at most exact +
// (counter now - counter). It stops detect from reading the exact figure
// again while that cannot reach the lowest open level: an app whose users
// log in many times reaches the levels by logins long before by users, and
// most group creations are not of live groups.
//
// An app whose counter changes every check has its latest read covered
// only by a later check, so the counter held after an earlier read is kept
// (seen, after the read that began at seenAt, unix nanoseconds) until a
// check covers that read: its exact figure then counts what it raised.
//
// Coverage by time (a partition without a stored position) assumes a flush
// lands within overlap; one landing later can leave a bound low, as it can
// leave an app unchecked (readUsage). Neither sees what the rows held do not
// count: a live group created by an event dated before the previous month
// (MAX_EVENT_AGE is 62 days) or after the check (MAX_EVENT_FUTURE), which
// the check that reads it does not count yet. The next load, every
// ALERT_SWEEP, starts without bounds and reads every app.
type bound struct {
	exact, counter int64
	seen, seenAt   int64
	ok, seenOK     bool
}

// below reports whether b keeps the figure, with counter held now, below
// level% of limit.
func (b *bound) below(counter, limit int64, level int) bool {
	return b != nil && b.ok && counter >= b.counter && !reached(b.exact+counter-b.counter, limit, level)
}

// set records an exact read of a check: exact, with counter held after the
// read that began at now, and covered when every row counted so far was
// covered by coveredAt (the check's, after cover). Of two bounds that both
// hold it keeps the lower.
func (b *bound) set(exact, counter int64, covered bool, coveredAt, now int64) {
	c, ok := counter, covered
	if !ok && b.seenOK && b.seenAt <= coveredAt { // the counter held after an earlier read
		c, ok = b.seen, true
	}
	if ok && (!b.ok || exact-c < b.exact-b.counter) {
		b.exact, b.counter, b.ok = exact, c, true
	}
	if !b.seenOK || b.seenAt <= coveredAt { // keep an uncovered one until covered
		b.seen, b.seenAt, b.seenOK = counter, now, true
	}
}

// apply keeps r when it is newer than the version held of its row, as
// argMax(…, version) and the ReplacingMergeTree do, and reports whether it
// did, and whether the row's logins or its groups created or dissolved
// changed.
func (u *appUsage) apply(r usageRow) (newer, logins, groups bool) {
	i, found := slices.BinarySearchFunc(u.rows, r, compareRows)
	if !found {
		u.rows = slices.Insert(u.rows, i, r)
		return true, r.logins != 0, r.created != 0 || r.dissolved != 0
	}
	old := u.rows[i]
	if r.version <= old.version {
		return false, false, false
	}
	u.rows[i] = r
	if r.logins < old.logins { // counters never fall in normal operation; if they do, the bound no longer holds
		u.mau = nil
	}
	if r.created < old.created {
		u.live = nil
	}
	return true, r.logins != old.logins, r.created != old.created || r.dissolved != old.dissolved
}

// usageRows returns how many daily_usage rows the alerter holds.
func (a *Alerter) usageRows() int {
	n := 0
	for _, u := range a.usage {
		n += len(u.rows)
	}
	return n
}

// readUsage brings the alerter's copy of the daily_usage rows of the open
// and the previous month up to date and returns the apps to check,
// and whether that is every app (a load). It loads every row when full is
// set, on the first call, in a new month, after a failed load, and when a
// stored position fell; otherwise it reads only the rows that can be new
// (below), and returns the apps with a newer row not checked yet (a check
// that fails leaves them for the next), and those whose logins or groups
// changed in a read not covered yet (their user_days or live_group_changes
// rows, written in the same flush, may land after the daily_usage row: see
// cover).
//
// Which rows can be new. Each read needs the partitions' stored positions
// (consumer_offsets) read before it begins: read during the check before
// (Check), or first thing. For a partition that had a stored position P
// before the previous successful read began, it reads the rows with a
// version above P; for any other partition, the rows written since the
// previous read began, less overlap.
//
// Why no row is missed, partitions with a position: a flush writes its
// daily_usage rows with the position it is complete up to as their version,
// and stores that position only once every row is in (the INSERT returned,
// so every later read sees it: on a cluster, inserts reach a quorum and
// reads are sequentially consistent, schemas.ReplicaSettings). The next
// flush of the partition, by the same aggregator or by the one that replays
// it after a crash or a rebalance, starts from the stored position, so its
// versions are above it; positions never fall in normal operation (a
// recreated topic gets an offset_base that keeps them growing; accept-gap
// moves them forward). So a row that is not visible at a moment T has a
// version above the position stored at T: its flush either had not stored
// its position by T (its version is above the one its start found stored,
// still the stored one at T) or starts after T. Take a row that became
// visible at v, the first successful read to begin after v, and the
// successful read before it, which began before v, its positions P read
// before it began: the row was not visible then, so its version is above
// P, the bound of the first read. This holds for any clock, flush duration and
// replay: a replayed flush lands versions below those already read, above
// the position it started from. Positions that fell (ClickHouse restored or
// its database created again) or went away mean a load. A row escapes only
// when a flush's insert lands after another flush of its partition stored a
// later position (the server finishing the INSERT of an aggregator that died
// long before, or two aggregators writing one partition): the next full load,
// every ALERT_SWEEP, reads it.
//
// Partitions without a position (before their first flush is complete, or
// rows no aggregator wrote): a read that begins at T (the alerter's clock,
// taken before the query) sees every row visible by then. Take a row with
// updated_at u that became visible at v, and the first read to begin after
// v, at T; the read before it began at P, with P < v (or it would have seen
// the row). That read asks for the rows with updated_at >= P-overlap, which
// holds when v-u <= overlap, since P < v: so every row is read by the first
// read that can see it as long as it became visible within overlap of its
// updated_at (a flush's insert time plus how far the aggregator's clock is
// behind the alerter's; updated_at is truncated to the second and the bound
// too, which only widens the window). A row landing later than that (a
// flush stuck for longer, a clock further off) is read by the next full load,
// every ALERT_SWEEP.
//
// Which parts are read. On a table that is not replicated (engine
// ReplacingMergeTree), ClickHouse numbers an inserted block when it commits
// it, under the lock that makes it visible, and names each part after the
// lowest and highest block it holds (a merge keeps the highest, and so does
// a mutation). So a row that became visible after a moment is in a part
// whose highest block is above every block visible at that moment. Each
// read first lists the highest block number (sqlAlertBlocks); the next
// incremental read reads only the parts with a block above it
// (sqlAlertUsage's block). Every row it must read (above) became visible after
// the previous read began, so it is in those parts; ClickHouse picks them
// by name before it reads a row, so a read costs the new parts, not the
// months' rows. A replicated table numbers a block when its insert begins,
// and its replicas fetch parts in any order: it is read whole. Loads read
// everything; block numbers that fell (the table emptied or made again)
// mean a load. Rows changed in place (ALTER … UPDATE keeps the block
// numbers), and rows of blocks numbered again (the newest partition dropped
// and the server restarted, which numbers from the highest block left,
// between two reads), are read by the next load.
//
// Rows read more than once, and a replayed or slow flush that lands an older
// version after a newer one, change nothing: each row keeps the highest
// version read, as the table does when it merges. A read that fails part
// way leaves rows of the window applied, and readAt and the positions where
// they were, so the next read covers the window again.
//
// A sweep's load (loaded, from loadUsage) may have been made while checks
// went on: it replaces the usage held as if the load were the previous
// read (its positions, blocks and start), and this read then takes the rows
// written since it began, as for any incremental read.
func (a *Alerter) readUsage(ctx context.Context, now time.Time, full bool, loaded *loadedUsage) (apps []appToCheck, all bool, err error) {
	cur := schemas.MonthOf(now, a.cfg.Location)
	if loaded != nil && !loaded.used {
		loaded.used = true
		if loaded.month == cur && a.usage != nil && a.month == cur && !full {
			a.adopt(loaded, now)
		}
	}
	positions := a.nextPositions
	if positions == nil {
		if positions, err = a.readPositions(ctx); err != nil {
			return nil, false, err
		}
	}
	fell := positionsFell(a.positions, positions)
	if fell && a.usage != nil {
		a.cfg.Logger.Info("alerts: a stored position fell or went away; loading the usage again")
	}
	blocksFrom, prune, err := a.readBlocks(ctx)
	if err != nil {
		return nil, false, err
	}
	if blocksFrom < a.blocksFrom && a.usage != nil {
		fell = true // the table was emptied or made again
		a.cfg.Logger.Info("alerts: daily_usage's block numbers fell; loading the usage again")
	}
	if full || a.usage == nil || cur != a.month || fell {
		l, err := a.loadUsage(ctx, now, positions, blocksFrom, prune)
		if err != nil {
			return nil, false, err
		}
		a.adopt(l, now)
	} else {
		if err := a.readSince(ctx, now, positions, blocksFrom, prune); err != nil {
			return nil, false, err
		}
	}
	if a.uncheckedAll {
		apps = make([]appToCheck, 0, len(a.usage))
		for app, u := range a.usage {
			apps = append(apps, appToCheck{app: app, u: u})
		}
		return apps, true, nil
	}
	for app, r := range a.recent {
		if r.at <= a.coveredAt {
			delete(a.recent, app)
		}
	}
	apps = make([]appToCheck, 0, len(a.unchecked)+len(a.recent))
	for _, c := range a.unchecked {
		apps = append(apps, c)
	}
	for app, r := range a.recent {
		if _, ok := a.unchecked[app]; !ok {
			apps = append(apps, appToCheck{app: app, u: r.u})
		}
	}
	return apps, false, nil
}

// readBlocks returns one above the highest block number of daily_usage
// (0 when it has no part) and whether its parts can be pruned by block
// (not replicated; see readUsage).
func (a *Alerter) readBlocks(ctx context.Context) (from uint64, prune bool, err error) {
	var nParts, maxBlock uint64
	var engine string
	if err := a.conn.QueryRow(ctx, sqlAlertBlocks).Scan(&nParts, &maxBlock, &engine); err != nil {
		return 0, false, fmt.Errorf("read system.parts: %w", err)
	}
	if nParts > 0 {
		from = maxBlock + 1
	}
	return from, engine == "ReplacingMergeTree", nil
}

// loadedUsage is a load of the usage of a month and the month before: every
// app's rows, read after positions and blocksFrom were (as for a read, see
// readUsage), from began on the alerter's clock. incomplete are the apps
// with a row above its partition's position (its flush may not be complete
// yet); used is set once a check has taken it.
type loadedUsage struct {
	month      schemas.Month
	began      time.Time
	usage      map[uint32]*appUsage
	rows       int
	versions   map[int32]uint64 // the highest version read of each partition
	incomplete []*appUsage
	positions  map[int32]uint64
	blocksFrom uint64
	prune      bool
	used       bool
}

type loadResult struct {
	l    *loadedUsage
	took time.Duration
	err  error
}

// sweepLoad is a sweep's load, made while checks go on: it reads the
// positions and blocks the load starts from, then the rows.
func (a *Alerter) sweepLoad(ctx context.Context, now time.Time) (*loadedUsage, error) {
	positions, err := a.readPositions(ctx)
	if err != nil {
		return nil, err
	}
	blocksFrom, prune, err := a.readBlocks(ctx)
	if err != nil {
		return nil, err
	}
	return a.loadUsage(ctx, now, positions, blocksFrom, prune)
}

// loadUsage reads every daily_usage row of the month of now and the month
// before, newest version of each. It reads the alerter's configuration
// only, so a sweep's load can run while checks go on (Run).
func (a *Alerter) loadUsage(ctx context.Context, now time.Time, positions map[int32]uint64, blocksFrom uint64, prune bool) (*loadedUsage, error) {
	cur := schemas.MonthOf(now, a.cfg.Location)
	l := &loadedUsage{month: cur, began: now, usage: map[uint32]*appUsage{}, versions: map[int32]uint64{},
		positions: positions, blocksFrom: blocksFrom, prune: prune}
	none := []int32{-1} // no partition: every row
	rows, err := a.conn.Query(ctx, sqlAlertUsage, none, []uint64{0}, none, int64(0),
		cur.Prev().FirstDay().String(), cur.LastDay().String(), uint64(0))
	if err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		app, updated, r, err := scanUsage(rows)
		if err != nil {
			return nil, err
		}
		l.rows++
		l.versions[r.part] = max(l.versions[r.part], r.version)
		u := usageOf(l.usage, app)
		u.rows = append(u.rows, r) // one row per key, sorted below
		// Changed when written; when taken if its flush may not be
		// complete (above its partition's position): until that read is
		// covered (adopt).
		u.loginsAt = max(u.loginsAt, int64(updated)*int64(time.Second))
		if next, ok := positions[r.part]; ok && r.version > next {
			l.incomplete = append(l.incomplete, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	for _, u := range l.usage {
		slices.SortFunc(u.rows, compareRows)
		u.groupsAt = u.loginsAt
	}
	return l, nil
}

// adopt makes l the usage held, as the read of the check of now, and has
// every app checked.
func (a *Alerter) adopt(l *loadedUsage, now time.Time) {
	at := now.UnixNano()
	for _, u := range l.incomplete {
		u.loginsAt = max(u.loginsAt, at)
		u.groupsAt = u.loginsAt
	}
	a.recent = map[uint32]recentApp{}
	for app, u := range l.usage {
		if a.isRecent(u, now) {
			a.recent[app] = recentApp{u: u, at: max(u.loginsAt, u.groupsAt)}
		}
	}
	a.usage, a.month, a.held = l.usage, l.month, l.rows
	a.readAt, a.positions, a.nextPositions, a.lastRead = l.began, l.positions, nil, l.rows
	a.blocksFrom, a.pruneParts = l.blocksFrom, l.prune
	a.uncovered = append(a.uncovered, readSpan{at: at, versions: l.versions})
	a.unchecked, a.uncheckedAll = map[uint32]appToCheck{}, true
}

// readSince applies the daily_usage rows of a.month and the month before
// that can be new since the last read (see readUsage) to the usage held,
// and marks their apps unchecked; positions, blocksFrom and prune are for
// the next read.
func (a *Alerter) readSince(ctx context.Context, now time.Time, positions map[int32]uint64, blocksFrom uint64, prune bool) error {
	from, to := a.month.Prev().FirstDay().String(), a.month.LastDay().String()
	since := max(a.readAt.Add(-overlap).Unix(), 0)
	parts, bounds := []int32{-1}, []uint64{0} // -1: no such partition; the arrays are never empty
	for p, next := range a.positions {
		parts, bounds = append(parts, p), append(bounds, next+1)
	}
	block := uint64(0) // every part
	if a.pruneParts {
		block = a.blocksFrom
	}
	rows, err := a.conn.Query(ctx, sqlAlertUsage, parts, bounds, parts, since, from, to, block)
	if err != nil {
		return fmt.Errorf("read daily_usage: %w", err)
	}
	defer rows.Close()
	if a.unchecked == nil {
		a.unchecked = map[uint32]appToCheck{}
	}
	at := now.UnixNano()
	n := 0
	read := readSpan{at: at, versions: map[int32]uint64{}}
	for rows.Next() {
		app, _, r, err := scanUsage(rows)
		if err != nil {
			return err
		}
		n++
		read.versions[r.part] = max(read.versions[r.part], r.version)
		u := usageOf(a.usage, app)
		had := len(u.rows)
		newer, logins, groups := u.apply(r)
		if !newer {
			continue
		}
		a.held += len(u.rows) - had
		changed := uint8(changedRow)
		if logins {
			u.loginsAt = at
			changed |= changedLogins
		}
		if groups {
			u.groupsAt = at
			changed |= changedGroups
		}
		if logins || groups {
			a.recent[app] = recentApp{u: u, at: at}
		}
		c := a.unchecked[app]
		a.unchecked[app] = appToCheck{app: app, u: u, changed: c.changed | changed}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read daily_usage: %w", err)
	}
	a.readAt, a.positions, a.nextPositions, a.lastRead = now, positions, nil, n
	a.blocksFrom, a.pruneParts = blocksFrom, prune
	a.uncovered = append(a.uncovered, read)
	return nil
}

// scanUsage scans a row of sqlAlertUsage: its app, its updated_at (unix
// seconds) and the row.
func scanUsage(rows driver.Rows) (app, updated uint32, r usageRow, err error) {
	var day uint16
	if err := rows.Scan(&app, &day, &r.part, &r.version, &r.logins, &r.community, &r.created, &r.dissolved, &updated); err != nil {
		return 0, 0, r, fmt.Errorf("read daily_usage: %w", err)
	}
	r.day = schemas.Day(day)
	return app, updated, r, nil
}

// usageOf returns app's usage in m, added when missing.
func usageOf(m map[uint32]*appUsage, app uint32) *appUsage {
	u := m[app]
	if u == nil {
		u = &appUsage{}
		m[app] = u
	}
	return u
}

// readSpan is a read of daily_usage: when it began (unix nanoseconds) and
// the highest version it read of each partition.
type readSpan struct {
	at       int64
	versions map[int32]uint64
}

// cover moves coveredAt past the reads, oldest first, whose rows' user_days
// and live_group_changes rows the check that just finished saw: a flush
// stores its position only once all its rows are in, so a read is covered
// when the positions read before this check's read reach every version it
// read of their partitions, and, if it read a partition without a
// position, it began more than overlap ago (see readUsage). The apps whose logins or groups changed
// in a read were checked by every check until then, this one included.
func (a *Alerter) cover(now time.Time) {
	old := now.Add(-overlap).UnixNano()
	for len(a.uncovered) > 0 && a.uncovered[0].coveredBy(a.positions, old) {
		a.coveredAt = max(a.coveredAt, a.uncovered[0].at)
		a.uncovered = a.uncovered[1:]
	}
}

// coveredBy reports whether every version r read is covered: at or below
// its partition's position, or, for a partition without one, read before
// old.
func (r readSpan) coveredBy(positions map[int32]uint64, old int64) bool {
	for p, v := range r.versions {
		if next, ok := positions[p]; ok && next < v || !ok && r.at >= old {
			return false
		}
	}
	return true
}

// recentApp is an app whose logins or groups changed at at (unix
// nanoseconds; the latest of its loginsAt and groupsAt).
type recentApp struct {
	u  *appUsage
	at int64
}

// exactRead is an exact read by a check of u's MAU of month i (the logins
// of the month held then: counter), or of its live groups (live; the groups
// created in the rows held then).
type exactRead struct {
	u              *appUsage
	i              int
	live           bool
	exact, counter int64
}

// exactWatch is a limit whose exact figure a check reads.
type exactWatch struct {
	watch
	read exactRead
}

// appToCheck is an app a check looks at, its usage, and what changed in
// it since a check last finished with it.
type appToCheck struct {
	app     uint32
	u       *appUsage
	changed uint8
}

// readPositions returns the stored position of each source partition.
func (a *Alerter) readPositions(ctx context.Context) (map[int32]uint64, error) {
	rows, err := a.conn.Query(ctx, sqlAlertPositions)
	if err != nil {
		return nil, fmt.Errorf("read consumer_offsets: %w", err)
	}
	defer rows.Close()
	out := map[int32]uint64{}
	for rows.Next() {
		var p int32
		var next uint64
		if err := rows.Scan(&p, &next); err != nil {
			return nil, fmt.Errorf("read consumer_offsets: %w", err)
		}
		out[p] = next
	}
	return out, rows.Err()
}

// positionsFell reports whether a partition's position in cur is below the
// one in prev, or gone.
func positionsFell(prev, cur map[int32]uint64) bool {
	for p, next := range prev {
		if c, ok := cur[p]; !ok || c < next {
			return true
		}
	}
	return false
}

// What changed in an app not checked yet.
const (
	changedRow    = 1 << iota // a row is newer
	changedLogins             // a row's logins
	changedGroups             // a row's groups created or dissolved
)

// isRecent reports whether u's logins or groups changed in the last overlap.
func (a *Alerter) isRecent(u *appUsage, now time.Time) bool {
	return max(u.loginsAt, u.groupsAt) >= now.Add(-overlap).UnixNano()
}

// watch is a limit of an app to check: the levels not alerted yet are
// crossed when value*100 >= level*limit.
type watch struct {
	app     uint32
	kind    string
	period  string
	edition Edition
	limit   int64
}

func (w watch) id(level int) string {
	return schemas.AlertID(w.app, w.kind, w.period, string(w.edition), level)
}

// detect returns the new alerts of apps, from the usage held, detected at
// now. It reads the exact MAU (user_days) of the apps whose logins reach a
// level not alerted yet, and the live groups (live_group_changes), only for
// apps whose logins, respectively groups, changed recently or since the
// last check that finished, or of every app when all is set.
func (a *Alerter) detect(ctx context.Context, apps []appToCheck, all bool, now time.Time, plans map[uint32][]planChange) ([]schemas.Alert, error) {
	a.lastMAU, a.lastLive, a.exactRead = 0, 0, a.exactRead[:0]
	if len(apps) == 0 {
		return nil, nil
	}
	loc := a.cfg.Location
	cur := schemas.MonthOf(now, loc)
	months := []schemas.Month{cur.Prev(), cur}
	first := cur.FirstDay()
	monthEnds := []time.Time{minTime(now, months[0].End(loc)), minTime(now, months[1].End(loc))}
	t0 := time.Now()

	pb := a.cfg.Prices
	editions := map[Edition]*editionPrices{}
	var lastEdition Edition // and lastPrices: most apps are of one edition
	var lastPrices *editionPrices
	edition := func(app uint32, e Edition) (*editionPrices, error) {
		if e == lastEdition && lastPrices != nil {
			return lastPrices, nil
		}
		if ep, ok := editions[e]; ok {
			lastEdition, lastPrices = e, ep
			return ep, nil
		}
		ep, err := pb.edition(e)
		if err != nil {
			return nil, fmt.Errorf("app %d: %w", app, err)
		}
		editions[e] = &ep
		lastEdition, lastPrices = e, &ep
		return &ep, nil
	}
	lowest := pb.alertLevels[0]
	recent := a.coveredAt // changed after: the user_days or live_group_changes rows may lag
	var out []schemas.Alert
	check := func(w watch, value int64) {
		out = append(out, a.crossed(w, value, now)...)
	}
	mauWatches := map[schemas.Month][]exactWatch{}
	var liveWatch []exactWatch
	for _, c := range apps {
		app, u, changed := c.app, c.u, c.changed
		changes := plans[app]
		var month [2]dayFigures
		for _, r := range u.rows {
			if r.day >= first {
				month[1].add(r.dayFigures)
			} else {
				month[0].add(r.dayFigures)
			}
		}
		for i, m := range months {
			e := editionAt(changes, monthEnds[i])
			ep, err := edition(app, e)
			if err != nil {
				return nil, err
			}
			// Logins bound the MAU from above: the exact count is read only
			// when they reach the lowest level not alerted yet, and, once
			// read, when the count read plus the logins since may (mauBound).
			logins := int64(month[i].logins)
			if (all || changed&changedLogins != 0 || u.loginsAt > recent) && ep.freeMAU != Unlimited && reached(logins, ep.freeMAU, lowest) {
				w := watch{app: app, kind: schemas.AlertMAUQuota, period: m.String(), edition: e, limit: ep.freeMAU}
				if lvl, ok := a.lowestOpen(w); ok && reached(logins, w.limit, lvl) && (u.mau == nil || !u.mau[i].below(logins, w.limit, lvl)) {
					mauWatches[m] = append(mauWatches[m], exactWatch{w, exactRead{u: u, i: i, counter: logins}})
				}
			}
			community := int64(month[i].community)
			if ep.hasCommunity && ep.communityIncluded > 0 && reached(community, ep.communityIncluded, lowest) {
				check(watch{app: app, kind: schemas.AlertCommunityAllowance, period: m.String(), edition: e, limit: ep.communityIncluded}, community)
			}
		}
		for i := 0; i < len(u.rows); {
			d, f := u.rows[i].day, u.rows[i].dayFigures
			for i++; i < len(u.rows) && u.rows[i].day == d; i++ { // the day's other partitions
				f.add(u.rows[i].dayFigures)
			}
			net := int64(f.created) - int64(f.dissolved)
			e := EditionDeveloper // editionAt without changes, without working out the day's end
			if len(changes) > 0 {
				e = editionAt(changes, minTime(now, dayEnd(d, loc)))
			}
			ep, err := edition(app, e)
			if err != nil {
				return nil, err
			}
			if lim := ep.limits.DailyNetGroupIncrease; lim != Unlimited && reached(net, lim, lowest) {
				check(watch{app: app, kind: schemas.AlertDailyNetGroups, period: d.String(), edition: e, limit: lim}, net)
			}
		}
		// Group creations bound the live groups from above once read
		// (bound): they are read only when that bound may reach the lowest
		// level not alerted yet.
		if all || changed&changedGroups != 0 || u.groupsAt > recent {
			e := editionAt(changes, now)
			ep, err := edition(app, e)
			if err != nil {
				return nil, err
			}
			created := int64(month[0].created + month[1].created)
			w := watch{app: app, kind: schemas.AlertLiveGroups, period: schemas.AlertLivePeriod, edition: e, limit: ep.limits.LiveGroups}
			if lvl, ok := a.lowestOpen(w); ok && !u.live.below(created, w.limit, lvl) {
				liveWatch = append(liveWatch, exactWatch{w, exactRead{u: u, live: true, counter: created}})
			}
		}
	}

	// The exact MAU, by month and chunk of apps, and the live groups are
	// independent reads: at once.
	a.lastMAU = len(mauWatches[months[0]]) + len(mauWatches[months[1]])
	t1 := time.Now()
	type mauRead struct {
		ws   []exactWatch
		mau  map[uint32]int64
		took time.Duration
	}
	var mauReads []*mauRead
	var reads []func(context.Context) error
	var tMAU, tLive time.Duration
	for _, m := range months {
		for chunk := range slices.Chunk(mauWatches[m], maxAppsPerQuery) {
			r := &mauRead{ws: chunk}
			mauReads = append(mauReads, r)
			reads = append(reads, func(ctx context.Context) (err error) {
				r.mau, err = a.counts(ctx, sqlAlertMAU, "user_days", m.FirstDay().String(), m.LastDay().String(), appSet(chunk))
				r.took = time.Since(t1)
				return err
			})
		}
	}
	// The live groups of a few apps are read by app (the table's key), of
	// many, and at a load, whole: the table keeps every change ever made.
	var live map[uint32]int64
	if len(liveWatch) > 0 {
		reads = append(reads, func(ctx context.Context) (err error) {
			if all || len(liveWatch) > maxLiveAppsPerQuery {
				live, err = a.counts(ctx, sqlAlertLiveGroups, "live_group_changes", now.Unix()+1)
			} else {
				live, err = a.counts(ctx, sqlAlertLiveGroupsOf, "live_group_changes", appSet(liveWatch), now.Unix()+1)
			}
			tLive = time.Since(t1)
			return err
		})
	}
	if err := concurrently(ctx, reads...); err != nil {
		return nil, err
	}
	for _, r := range mauReads {
		tMAU = max(tMAU, r.took)
		for _, w := range r.ws {
			mau := r.mau[w.app]
			check(w.watch, mau)
			w.read.exact = mau
			a.exactRead = append(a.exactRead, w.read)
		}
	}
	a.lastLive = len(liveWatch)
	for _, w := range liveWatch {
		n := live[w.app]
		check(w.watch, n)
		w.read.exact = n
		a.exactRead = append(a.exactRead, w.read)
	}
	a.cfg.Logger.Debug("alerts: detect", "apps", t1.Sub(t0),
		"mau_exact", a.lastMAU, "user_days", tMAU, "live", a.lastLive, "live_group_changes", tLive)
	slices.SortFunc(out, func(x, y schemas.Alert) int {
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// mayReach reports whether value reaches the lowest level of w's limit: a
// check without building ids, for the many limits far from any level.
func (a *Alerter) mayReach(w watch, value int64) bool {
	return w.limit != Unlimited && reached(value, w.limit, a.cfg.Prices.alertLevels[0])
}

// lowestOpen returns the lowest level of w not alerted yet; ok is false when
// there is none or the limit is unlimited.
func (a *Alerter) lowestOpen(w watch) (level int, ok bool) {
	if w.limit == Unlimited {
		return 0, false
	}
	for _, l := range a.cfg.Prices.alertLevels {
		if !a.known[w.id(l)] {
			return l, true
		}
	}
	return 0, false
}

// crossed returns the alerts of the levels of w that value reaches and that
// were not alerted yet.
func (a *Alerter) crossed(w watch, value int64, now time.Time) []schemas.Alert {
	if !a.mayReach(w, value) {
		return nil
	}
	var out []schemas.Alert
	for _, l := range a.cfg.Prices.alertLevels {
		id := w.id(l)
		if !reached(value, w.limit, l) || a.known[id] {
			continue
		}
		out = append(out, schemas.Alert{
			ID: id, App: w.app, Kind: w.kind, Period: w.period, Level: l, Value: value, Limit: w.limit,
			Edition: string(w.edition), At: now.UTC(),
		})
	}
	return out
}

// reached reports whether value >= level% of limit, in integers.
func reached(value, limit int64, level int) bool {
	return value*100 >= int64(level)*limit
}

// maxAppsPerQuery bounds the apps listed in one query (ClickHouse's
// max_query_size is 256 KiB; an app id takes up to 12 bytes).
const maxAppsPerQuery = 10000

// maxLiveAppsPerQuery: above it, live_group_changes is read whole. Read by
// app, ClickHouse reads each app's granules; on 18.16 a few apps' took 11
// ms of a table of 2M changes that took 2.0 s whole, and 2,100–4,500 apps'
// 0.2–1.3 s.
const maxLiveAppsPerQuery = 1000

func appSet(ws []exactWatch) clickhouse.GroupSet {
	s := clickhouse.GroupSet{Value: make([]any, len(ws))}
	for i, w := range ws {
		s.Value[i] = w.app
	}
	return s
}

// counts runs a query returning (app, count) rows.
func (a *Alerter) counts(ctx context.Context, query, table string, args ...any) (map[uint32]int64, error) {
	rows, err := a.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	out := map[uint32]int64{}
	for rows.Next() {
		var app uint32
		var n uint64
		if err := rows.Scan(&app, &n); err != nil {
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		out[app] = int64(n)
	}
	return out, rows.Err()
}

// editionAt returns the edition in force just before t: that of the last
// change before t, Developer before any. changes are in time order.
func editionAt(changes []planChange, t time.Time) Edition {
	e := EditionDeveloper
	for _, c := range changes {
		if !c.at.Before(t) {
			break
		}
		e = c.edition
	}
	return e
}

func dayEnd(d schemas.Day, loc *time.Location) time.Time {
	t := d.Date()
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// AppAlerts returns the stored alerts of an app whose period is in month m
// (live-group alerts, which have no month, when they were detected in it),
// in the order they were detected.
func AppAlerts(ctx context.Context, conn driver.Conn, app uint32, m schemas.Month, loc *time.Location) ([]schemas.Alert, error) {
	rows, err := conn.Query(ctx, sqlAlertsOfApp, app)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	defer rows.Close()
	var out []schemas.Alert
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("read alerts: %w", err)
		}
		var al schemas.Alert
		if err := json.Unmarshal([]byte(body), &al); err != nil {
			return nil, fmt.Errorf("read alerts: %w", err)
		}
		in := len(al.Period) >= 7 && al.Period[:7] == m.String()
		if al.Period == schemas.AlertLivePeriod {
			in = schemas.MonthOf(al.At, loc) == m
		}
		if in {
			out = append(out, al)
		}
	}
	slices.SortStableFunc(out, func(x, y schemas.Alert) int { return x.At.Compare(y.At) })
	return out, rows.Err()
}

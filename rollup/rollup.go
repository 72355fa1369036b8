package rollup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"

	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// Config configures a Rollup. Start from DefaultConfig: a zero field means
// zero, not the default (only a nil Location, Prices, Now or Logger takes
// the default), and New rejects values that make no sense, naming the
// setting.
type Config struct {
	Brokers  []string              // KAFKA_BROKERS; required
	Security schemas.KafkaSecurity // SASL and TLS towards the brokers; default plaintext
	Topic    string                // billing topic (BILLING_TOPIC); default im.billing.monthly
	Location *time.Location        // billing time zone (BILLING_TZ); default +08:00
	Prices   *PriceBook            // PLANS_FILE; default DefaultPriceBook()

	// Interval is how often provisional records are published for the open
	// month, only for apps whose figures changed (ROLLUP_INTERVAL). Default
	// 1h; must be > 0.
	Interval time.Duration
	// SettleAfter is how long after a month ends (in the billing time zone)
	// its final records are published (SETTLE_AFTER): 0 publishes them as
	// soon as the month has ended. Late events before then are simply
	// counted; after it, they produce corrections. Default 24h; shorter than
	// CorrectionMonths × 28 days, or the month would be out of sight before
	// it settles.
	SettleAfter time.Duration
	// CorrectionMonths is how many months before the open one are checked
	// for late usage, and for final records due, on every pass. Default 2;
	// at least 1, or no month would ever get its final record.
	CorrectionMonths int

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // nil: slog.Default() when the value is made (after the command set the log level)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Topic:            schemas.BillingTopic,
		Location:         time.FixedZone(schemas.DefaultTimezone, 8*3600),
		Interval:         time.Hour,
		SettleAfter:      24 * time.Hour,
		CorrectionMonths: 2,
		Now:              time.Now,
	}
}

// fill sets the nil fields to their defaults; zero values stay as given.
func (c *Config) fill() {
	d := DefaultConfig()
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
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("KAFKA_BROKERS: required")
	case c.Topic == "":
		return errors.New("BILLING_TOPIC: must not be empty")
	case c.Interval <= 0:
		return fmt.Errorf("ROLLUP_INTERVAL: must be > 0; got %s", c.Interval)
	case c.CorrectionMonths < 1:
		return fmt.Errorf("CorrectionMonths: must be >= 1 (a month that has ended must still be checked to get its final record); got %d", c.CorrectionMonths)
	case c.SettleAfter < 0:
		return fmt.Errorf("SETTLE_AFTER: must not be negative; got %s", c.SettleAfter)
	case c.SettleAfter >= time.Duration(c.CorrectionMonths)*28*24*time.Hour:
		return fmt.Errorf("SETTLE_AFTER: must be shorter than %d days (the months checked after a month ends); got %s", c.CorrectionMonths*28, c.SettleAfter)
	}
	return c.Security.Validate()
}

// Rollup turns ClickHouse usage into billing records: it stores each new
// revision in ClickHouse, then publishes it. One Rollup runs per database.
type Rollup struct {
	cfg  Config
	conn driver.Conn
	w    *kafka.Writer
	m    *metrics // for Prometheus (metrics.go)
}

// New returns a Rollup reading and writing through conn (migrated).
func New(cfg Config, conn driver.Conn) (*Rollup, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A transport of its own: the shared default caches topic metadata for
	// seconds and could miss a topic created just before.
	tr, err := cfg.Security.Transport("immeter-rollup")
	if err != nil {
		return nil, err
	}
	tr.MetadataTTL = time.Second
	// kafka-go has no idempotent producer (no producer id or sequence
	// numbers): it writes one batch at a time per partition, in order, and
	// retries a batch whose acknowledgement was lost, which can store it
	// twice. So records are acknowledged by all in-sync replicas (with
	// min.insync.replicas 2 on a 3-broker cluster, on two brokers at least),
	// and billing dedupes on (app, month, revision) (README).
	return &Rollup{cfg: cfg, conn: conn, m: newMetrics(cfg), w: &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		Transport:    tr,
		BatchTimeout: 10 * time.Millisecond,
		BatchSize:    1000,
	}}, nil
}

// Close releases the Kafka writer.
func (r *Rollup) Close() error { return r.w.Close() }

// Mode says which record a pass may publish for a month.
type Mode int

// Modes of Publish.
const (
	// Auto: provisional while the month is open, final once it is settled,
	// corrections after that.
	Auto Mode = iota
	// ForceFinal: final now if the month has none, else a correction if the
	// figures changed (immeter rollup --month M --final). Refused, with an
	// error wrapping ErrMonthNotEnded, while the month has not ended in the
	// billing time zone.
	ForceFinal
	// ForceFinalOpen is ForceFinal without that check: a month may be
	// finalized before it ends (immeter rollup --final --allow-open-month).
	ForceFinalOpen
)

// ErrMonthNotEnded says a final record was asked for a month that has not
// ended in the billing time zone.
var ErrMonthNotEnded = errors.New("the month has not ended in the billing time zone")

// Result counts the records a pass published.
type Result struct {
	Provisional, Final, Correction, Unchanged int
}

// Run publishes records until ctx is done. First it republishes stored
// revisions that Kafka never acknowledged (retrying every tick until that
// succeeds). Then, every tick, for the open
// month and the CorrectionMonths before it: a month still open or not yet
// settled gets provisional records at most every Interval; a settled month
// gets its final records once, and corrections whenever its usage changed.
// A month is recomputed only when its usage changed (see usageMark) or its
// final is due, so a pass over quiet months costs one small query each.
func (r *Rollup) Run(ctx context.Context, tick time.Duration) error {
	type monthState struct {
		mark    usageMark // at the last successful pass
		at      time.Time // when that pass ran
		settled bool      // that pass ran after the settlement time
	}
	seen := map[schemas.Month]*monthState{}
	// Nothing new is published before the unacknowledged revisions are
	// out: those of a crash, at start, and those of a pass that failed
	// after storing its revisions (Kafka down when it published them),
	// which the next pass finds stored and unchanged and would not publish.
	repair := true
	for {
		if repair {
			if err := r.Repair(ctx); err != nil {
				r.cfg.Logger.Warn("rollup: repair; retrying", "err", err)
				r.m.failures.Inc()
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(tick):
				}
				continue
			}
			repair = false
		}
		now := r.cfg.Now()
		cur := schemas.MonthOf(now, r.cfg.Location)
		for m, i := cur, 0; i <= r.cfg.CorrectionMonths; m, i = m.Prev(), i+1 {
			mark, err := r.usageMark(ctx, m)
			if err != nil {
				r.cfg.Logger.Warn("rollup: usage mark", "month", m, "err", err)
				continue
			}
			st := seen[m]
			settled := r.settled(m, now)
			switch {
			case st == nil: // first pass since start: catch up
			case settled && !st.settled: // the final is due
			case st.mark == mark: // nothing changed
				continue
			case !settled && now.Sub(st.at) < r.cfg.Interval: // provisional not due yet
				continue
			}
			if _, err := r.Publish(ctx, m, Auto); err != nil {
				r.cfg.Logger.Warn("rollup: month", "month", m, "err", err)
				r.m.failures.Inc()
				repair = true
				continue
			}
			seen[m] = &monthState{mark: mark, at: now, settled: settled}
			r.m.passed(m, settled, now)
		}
		for m := range seen {
			if m.Next().FirstDay() < cur.FirstDay()-schemas.Day(31*r.cfg.CorrectionMonths) {
				delete(seen, m)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(tick):
		}
	}
}

func (r *Rollup) settled(m schemas.Month, now time.Time) bool {
	return !now.Before(m.End(r.cfg.Location).Add(r.cfg.SettleAfter))
}

// usageMark changes whenever what month m is billed from is written.
type usageMark struct {
	// usage sums, over source partitions, the newest version (offset) of
	// the month's counter rows, which grows with every flush that touches
	// the month and is not changed by merges.
	usage uint64
	// plans counts the distinct plan changes in force before the month
	// ends. Plan events never touch the counters (they are accepted at any
	// age), so a plan change, however old, is seen here.
	plans uint64
}

func (r *Rollup) usageMark(ctx context.Context, m schemas.Month) (usageMark, error) {
	var mark usageMark
	err := r.conn.QueryRow(ctx, sqlUsageMark, m.FirstDay().String(), m.LastDay().String()).Scan(&mark.usage)
	if err != nil {
		return mark, fmt.Errorf("read daily_usage: %w", err)
	}
	// As readPlans: whole seconds, the at_nanos of the last one do not matter here.
	if err := r.conn.QueryRow(ctx, sqlPlanMark, m.End(r.cfg.Location).Unix()+1).Scan(&mark.plans); err != nil {
		return mark, fmt.Errorf("read plan_changes: %w", err)
	}
	return mark, nil
}

// Publish computes month m for every app and publishes what changed, as mode
// allows.
func (r *Rollup) Publish(ctx context.Context, m schemas.Month, mode Mode) (Result, error) {
	defer r.m.observe(time.Now())
	var res Result
	if end := m.End(r.cfg.Location); mode == ForceFinal && r.cfg.Now().Before(end) {
		return res, fmt.Errorf("%s: %w (%s): it ends at %s", m, ErrMonthNotEnded,
			schemas.TimezoneName(r.cfg.Location), end.In(r.cfg.Location).Format(time.RFC3339))
	}
	var usage map[uint32]*MonthUsage
	var latest map[uint32]revisionInfo
	start := time.Now()
	err := concurrently(ctx,
		func(ctx context.Context) (err error) {
			usage, err = ReadMonth(ctx, r.conn, m, r.cfg.Location)
			return err
		},
		func(ctx context.Context) (err error) { latest, err = r.latest(ctx, m); return err },
	)
	if err != nil {
		return res, err
	}
	settled := r.settled(m, r.cfg.Now())
	// Apps billed before but without usage now keep their record current.
	for app := range latest {
		if usage[app] == nil {
			usage[app] = &MonthUsage{App: app, Month: m, DayEditions: editionDays(nil, m, r.cfg.Location)}
		}
	}
	apps := make([]uint32, 0, len(usage))
	for app := range usage {
		apps = append(apps, app)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i] < apps[j] })

	// Each app's record is priced, compared and encoded on its own: the
	// work is shared among workers, and the records kept in app order. The
	// apps go through in chunks, pipelined: a chunk is priced while the one
	// before is stored and the one before that published, each record
	// stored before it is published. A pass that fails part way has
	// published some chunks and stored the next: Run repairs before its
	// next pass, `immeter rollup` at its next start.
	read := time.Now()
	now := r.cfg.Now().UTC().Truncate(time.Second)
	var priceTime, storeTime, publishTime time.Duration
	toStore, toPublish := make(chan []storedRecord, 1), make(chan []storedRecord, 1)
	storeDone, publishDone := make(chan error, 1), make(chan error, 1)
	go func() {
		defer close(toPublish)
		var err error
		for recs := range toStore { // drained after an error, so the pricing never blocks
			if err == nil {
				t := time.Now()
				if err = r.store(ctx, recs); err == nil {
					storeTime += time.Since(t)
					toPublish <- recs
				}
			}
		}
		storeDone <- err
	}()
	go func() {
		var err error
		for recs := range toPublish {
			if err == nil {
				t := time.Now()
				err = r.publish(ctx, recs)
				publishTime += time.Since(t)
			}
		}
		publishDone <- err
	}()
	records := 0
	err = func() error {
		defer close(toStore)
		for from := 0; from < len(apps); from += publishChunk {
			t := time.Now()
			out, err := r.priceChunk(apps[from:min(from+publishChunk, len(apps))], usage, latest, settled, mode, now, &res)
			priceTime += time.Since(t)
			if err != nil {
				return err
			}
			if len(out) > 0 {
				records += len(out)
				toStore <- out
			}
		}
		return nil
	}()
	if err2 := <-storeDone; err == nil {
		err = err2
	}
	if err2 := <-publishDone; err == nil {
		err = err2
	}
	if err != nil {
		return res, err
	}
	r.cfg.Logger.Debug("rollup: pass", "month", m, "apps", len(apps), "records", records,
		"read", read.Sub(start), "price", priceTime, "store", storeTime, "publish", publishTime, "total", time.Since(start))
	if n := res.Provisional + res.Final + res.Correction; n > 0 {
		r.cfg.Logger.Info("rollup: published", "month", m, "provisional", res.Provisional, "final", res.Final, "correction", res.Correction)
	}
	return res, nil
}

// publishChunk is how many apps a pass prices before storing their
// records (see Publish).
var publishChunk = 10000 // a variable for tests

// priceChunk prices the apps' months on workers and returns their new
// revisions in app order, counted in res.
func (r *Rollup) priceChunk(apps []uint32, usage map[uint32]*MonthUsage, latest map[uint32]revisionInfo,
	settled bool, mode Mode, now time.Time, res *Result) ([]storedRecord, error) {
	recs := make([]storedRecord, len(apps))
	errs := make([]error, len(apps))
	workers := min(runtime.GOMAXPROCS(0), 8)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(apps); i += workers {
				prev, hasPrev := latest[apps[i]]
				var p *revisionInfo
				if hasPrev {
					p = &prev
				}
				recs[i], errs[i] = r.nextRevision(usage[apps[i]], p, settled, mode, now)
			}
		}()
	}
	wg.Wait()
	var out []storedRecord
	for i, app := range apps {
		if errs[i] != nil {
			return nil, fmt.Errorf("app %d: %w", app, errs[i])
		}
		switch recs[i].rec.Status {
		case "":
			res.Unchanged++
			continue
		case schemas.Provisional:
			res.Provisional++
		case schemas.Final:
			res.Final++
		case schemas.Correction:
			res.Correction++
		}
		out = append(out, recs[i])
	}
	return out, nil
}

// nextRevision prices an app's month and returns its next revision, with
// status "" when none is due (see decideStatus); prev is the newest stored
// revision (nil if none), now the time of the pass.
func (r *Rollup) nextRevision(u *MonthUsage, prev *revisionInfo, settled bool, mode Mode, now time.Time) (storedRecord, error) {
	rec, err := r.Record(u)
	if err != nil {
		return storedRecord{}, err
	}
	fp := fingerprint(rec)
	rec.Status = decideStatus(prev, fp, settled, mode)
	if rec.Status == "" {
		return storedRecord{rec: rec}, nil
	}
	rec.Revision = 1
	if prev != nil {
		rec.Revision = prev.revision + 1
		rec.Supersedes = prev.revision
	}
	rec.GeneratedAt = now
	b, err := json.Marshal(rec)
	if err != nil {
		return storedRecord{}, err
	}
	return storedRecord{rec: rec, fingerprint: fp, json: b}, nil
}

// decideStatus returns the status of the next revision of an app's month,
// or "" when no record is due. prev is the newest stored revision (nil if
// none), fp the fingerprint of the figures now, settled whether the
// settlement time has passed.
//
//   - After a final or a correction: a correction if the figures changed,
//     else nothing.
//   - Otherwise, once settled or when forced: the final, even if the figures
//     are those of the last provisional record.
//   - Otherwise: a provisional record if there is none or the figures
//     changed, else nothing.
func decideStatus(prev *revisionInfo, fp string, settled bool, mode Mode) string {
	switch {
	case prev != nil && prev.status != schemas.Provisional:
		if prev.fingerprint == fp {
			return ""
		}
		return schemas.Correction
	case settled || mode == ForceFinal || mode == ForceFinalOpen:
		return schemas.Final
	case prev != nil && prev.fingerprint == fp:
		return ""
	default:
		return schemas.Provisional
	}
}

// Record prices one app's month. Status, revision and time are left to the caller.
func (r *Rollup) Record(u *MonthUsage) (schemas.BillingRecord, error) {
	return priceRecord(u, r.cfg.Prices, r.cfg.Location)
}

// priceRecord prices one app's month with prices in the billing time zone
// loc: the content of a billing record, without status, revision and time.
func priceRecord(u *MonthUsage, prices *PriceBook, loc *time.Location) (schemas.BillingRecord, error) {
	bill, err := prices.Price(PricingInput{
		Year:              u.Month.Year,
		Month:             u.Month.Month,
		DayEditions:       u.DayEditions,
		MAU:               int64(u.Usage.MAU),
		CallSeconds:       AudioVideo{Audio: int64(u.Usage.CallSeconds.Audio), Video: int64(u.Usage.CallSeconds.Video)},
		CommunityMessages: int64(u.Usage.Messages.Community),
	})
	if err != nil {
		return schemas.BillingRecord{}, err
	}
	rec := schemas.BillingRecord{
		App:         u.App,
		Month:       u.Month.String(),
		Timezone:    schemas.TimezoneName(loc),
		Edition:     string(bill.Edition),
		EditionDays: spans(u.DayEditions, u.Month),
		Usage:       u.Usage,
		Total:       bill.Total.StringFixed(2),
		Currency:    bill.Currency,
		Notes:       append(append([]string(nil), u.Notes...), bill.Notes...),
	}
	for _, c := range bill.Charges {
		rec.Charges = append(rec.Charges, schemas.Charge{
			Item:      c.Item,
			Quantity:  c.Quantity.String(),
			Unit:      c.Unit,
			UnitPrice: c.UnitPrice.String(),
			Amount:    c.Amount.StringFixed(2),
		})
	}
	return rec, nil
}

func spans(days []Edition, m schemas.Month) []schemas.Span {
	var out []schemas.Span
	first := m.FirstDay()
	// Only the ends of spans are formatted: formatting every day's date was
	// most of the work of a record.
	for start, i := 0, 1; i <= len(days); i++ {
		if i < len(days) && days[i] == days[start] {
			continue
		}
		out = append(out, schemas.Span{Edition: string(days[start]),
			From: (first + schemas.Day(start)).String(), To: (first + schemas.Day(i-1)).String(), Days: i - start})
		start = i
	}
	return out
}

// fingerprint identifies the billed content of a record: what a correction
// is about. Status, revision and times are not part of it.
func fingerprint(rec schemas.BillingRecord) string {
	b, _ := json.Marshal(struct {
		E string
		D []schemas.Span
		U schemas.Usage
		C []schemas.Charge
		T string
		N []string
	}{rec.Edition, rec.EditionDays, rec.Usage, rec.Charges, rec.Total, rec.Notes})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

type revisionInfo struct {
	revision    int
	status      string
	fingerprint string
}

// latest returns the newest stored revision of each app's month.
func (r *Rollup) latest(ctx context.Context, m schemas.Month) (map[uint32]revisionInfo, error) {
	rows, err := r.conn.Query(ctx, sqlLatest, m.String())
	if err != nil {
		return nil, fmt.Errorf("read billing_records: %w", err)
	}
	defer rows.Close()
	out := map[uint32]revisionInfo{}
	for rows.Next() {
		var app, rev uint32
		var status, fp string
		var settled uint64
		if err := rows.Scan(&app, &rev, &status, &fp, &settled); err != nil {
			return nil, fmt.Errorf("read billing_records: %w", err)
		}
		if settled > 0 && status == schemas.Provisional {
			status = schemas.Final // never happens unless rows were edited by hand
		}
		out[app] = revisionInfo{revision: int(rev), status: status, fingerprint: fp}
	}
	return out, rows.Err()
}

type storedRecord struct {
	rec         schemas.BillingRecord
	fingerprint string
	json        []byte // rec as stored and published
}

// store writes the new revisions to billing_records before they are
// published, so that a crash in between is repaired by Repair. Their list
// columns go to billing_months first: a crash between the two inserts
// leaves a revision in the console's app list only, until the retried step
// stores the revision again (the same month, app and revision number, as
// billing_records does not hold it; ReplacingMergeTree keeps one of the two
// rows). The other order could lose the list row for good, as no later step
// writes a revision billing_records already holds.
func (r *Rollup) store(ctx context.Context, recs []storedRecord) error {
	if len(recs) == 0 {
		return nil
	}
	m, err := r.conn.PrepareBatch(ctx, sqlInsertMonths)
	if err != nil {
		return fmt.Errorf("write billing_months: %w", err)
	}
	for i := range recs {
		rec := &recs[i].rec
		total, err := decimal.NewFromString(rec.Total)
		if err != nil {
			return err
		}
		if err := m.Append(rec.Month, rec.App, uint32(rec.Revision), rec.Status, rec.Edition, rec.Usage.MAU,
			total, rec.Currency, rec.GeneratedAt); err != nil {
			return fmt.Errorf("write billing_months: %w", err)
		}
	}
	if err := m.Send(); err != nil {
		return fmt.Errorf("write billing_months: %w", err)
	}
	b, err := r.conn.PrepareBatch(ctx, sqlInsertRecords)
	if err != nil {
		return fmt.Errorf("write billing_records: %w", err)
	}
	for i := range recs {
		s := &recs[i]
		total, err := decimal.NewFromString(s.rec.Total)
		if err != nil {
			return err
		}
		if err := b.Append(s.rec.App, s.rec.Month, uint32(s.rec.Revision), s.rec.Status, uint32(s.rec.Supersedes),
			s.rec.Edition, s.rec.Usage.MAU, total, s.rec.Currency, s.fingerprint, string(s.json), s.rec.GeneratedAt); err != nil {
			return fmt.Errorf("write billing_records: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write billing_records: %w", err)
	}
	return nil
}

// publish sends stored records to the billing topic (acks from all in-sync
// replicas), then marks them published.
func (r *Rollup) publish(ctx context.Context, recs []storedRecord) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	for i, s := range recs {
		msgs[i] = kafka.Message{
			Key:   []byte(strconv.FormatUint(uint64(s.rec.App), 10) + ":" + s.rec.Month),
			Value: s.json,
			Headers: []kafka.Header{
				{Key: "immeter-revision", Value: []byte(strconv.Itoa(s.rec.Revision))},
				{Key: "immeter-status", Value: []byte(s.rec.Status)},
			},
		}
	}
	if err := r.w.WriteMessages(ctx, msgs...); err != nil {
		telemetry.KafkaError(telemetry.KafkaPublishBilling)
		return fmt.Errorf("publish to %s: %w", r.cfg.Topic, err)
	}
	r.m.recordsPublished(recs)
	b, err := r.conn.PrepareBatch(ctx, sqlInsertPublished)
	if err != nil {
		return fmt.Errorf("write billing_published: %w", err)
	}
	at := r.cfg.Now().UTC().Truncate(time.Second)
	for _, s := range recs {
		if err := b.Append(s.rec.App, s.rec.Month, uint32(s.rec.Revision), at); err != nil {
			return fmt.Errorf("write billing_published: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write billing_published: %w", err)
	}
	return nil
}

// Repair publishes again, byte for byte, every stored revision that was not
// marked published (a crash between storing and publishing).
func (r *Rollup) Repair(ctx context.Context) error {
	rows, err := r.conn.Query(ctx, sqlUnpublished)
	if err != nil {
		return fmt.Errorf("read unpublished billing_records: %w", err)
	}
	var recs []storedRecord
	for rows.Next() {
		var app, rev uint32
		var month, status, body string
		if err := rows.Scan(&app, &month, &rev, &status, &body); err != nil {
			rows.Close()
			return fmt.Errorf("read unpublished billing_records: %w", err)
		}
		recs = append(recs, storedRecord{
			rec:  schemas.BillingRecord{App: app, Month: month, Revision: int(rev), Status: status},
			json: []byte(body),
		})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read unpublished billing_records: %w", err)
	}
	if len(recs) > 0 {
		r.cfg.Logger.Info("rollup: republishing unacknowledged revisions", "count", len(recs))
	}
	return r.publish(ctx, recs)
}

// Statement returns the newest stored record of an app's month.
func Statement(ctx context.Context, conn driver.Conn, app uint32, m schemas.Month) (schemas.BillingRecord, error) {
	var body string
	err := conn.QueryRow(ctx, sqlStatement,
		app, m.String()).Scan(&body)
	var rec schemas.BillingRecord
	if err != nil {
		return rec, fmt.Errorf("read billing_records: %w", err)
	}
	if body == "" {
		return rec, ErrNoRecord
	}
	return rec, json.Unmarshal([]byte(body), &rec)
}

// ErrNoRecord says a month has no stored record for the app.
var ErrNoRecord = errors.New("no billing record")

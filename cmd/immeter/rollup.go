package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

func init() {
	commands["rollup"] = runRollup
	commands["usage"] = runUsage
}

// rollupSettings are the rollup flags beyond the common ones.
type rollupSettings struct {
	cfg   rollup.Config
	alert rollup.AlertConfig
	plans string
	tick  time.Duration
	month string
	final bool
	open  bool        // --allow-open-month
	ops   opsSettings // `immeter rollup` only: run serves them itself
}

// register adds the rollup settings with the defaults of rollup.DefaultConfig.
func (s *rollupSettings) register(r *settings) {
	s.cfg = rollup.DefaultConfig()
	s.alert = rollup.DefaultAlertConfig()
	s.tick = time.Minute
	r.str(&s.plans, "PLANS_FILE", false, "price book YAML; default the built-in one")
	r.duration(&s.cfg.Interval, "ROLLUP_INTERVAL", positiveDuration, "provisional record interval")
	r.duration(&s.cfg.SettleAfter, "SETTLE_AFTER", anyDuration, "final records this long after the month ends; 0 right at its end")
	r.duration(&s.tick, "ROLLUP_TICK", positiveDuration, "how often settlement and corrections are checked")
	r.str(&s.alert.Topic, "ALERTS_TOPIC", true, "usage alerts topic")
	r.duration(&s.alert.Interval, "ALERT_INTERVAL", positiveDuration, "how often apps whose usage changed are checked for alerts")
	r.duration(&s.alert.Sweep, "ALERT_SWEEP", positiveDuration, "how often every app is checked for alerts")
}

// build completes the rollup configuration with the shared settings and
// checks it.
func (s *rollupSettings) build(c *common) error {
	if s.plans != "" {
		pb, err := rollup.LoadPriceBook(s.plans)
		if err != nil {
			return fmt.Errorf("PLANS_FILE: %w", err)
		}
		s.cfg.Prices = pb
	}
	s.cfg.Brokers, s.cfg.Security = brokers(c.kafka), c.sec.kafka
	s.cfg.Topic, s.cfg.Location = c.billing, c.loc
	s.alert.Brokers, s.alert.Security, s.alert.Location, s.alert.Prices = s.cfg.Brokers, c.sec.kafka, c.loc, s.cfg.Prices
	if s.alert.Topic == c.billing || s.alert.Topic == c.events || s.alert.Topic == c.dlq {
		return fmt.Errorf("ALERTS_TOPIC: %q is already the events, dead-letter or billing topic", s.alert.Topic)
	}
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	return s.alert.Validate()
}

// runDaemons runs the rollup daemon and the alerter until ctx is done or one
// of them fails.
func (s *rollupSettings) runDaemons(ctx context.Context, r *rollup.Rollup, a *rollup.Alerter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- r.Run(ctx, s.tick) }()
	go func() { errs <- a.Run(ctx) }()
	err := <-errs
	cancel()
	return errors.Join(err, <-errs)
}

// parseRollup reads the settings of `immeter rollup`.
func parseRollup(args []string) (*common, *rollupSettings, error) {
	fs := flag.NewFlagSet("rollup", flag.ContinueOnError)
	r := newSettings(fs)
	var c common
	c.register(r)
	var s rollupSettings
	s.register(r)
	fs.StringVar(&s.month, "month", "", "roll up this month (YYYY-MM) once and exit")
	fs.BoolVar(&s.final, "final", false, "with --month: publish the final record now (or a correction if the month is final and changed); refused before the month has ended in the billing time zone")
	fs.BoolVar(&s.open, "allow-open-month", false, "with --final: finalize a month that has not ended yet (its later usage then comes as corrections)")
	s.ops.register(r)
	if err := r.parse(args); err != nil {
		return nil, nil, err
	}
	if err := c.validate(true, true); err != nil {
		return nil, nil, err
	}
	return &c, &s, s.build(&c)
}

func runRollup(ctx context.Context, args []string) error {
	c, s, err := parseRollup(args)
	if err != nil {
		return err
	}
	var month schemas.Month
	if s.month != "" {
		if month, err = schemas.ParseMonth(s.month); err != nil {
			return fmt.Errorf("--month: %w", err)
		}
	} else if s.final {
		return errors.New("--final: needs --month")
	}
	if s.open && !s.final {
		return errors.New("--allow-open-month: only with --final")
	}
	// A final record is invoiced: a month typed wrong must not be closed.
	if s.final && !s.open {
		if end := month.End(c.loc); time.Now().Before(end) {
			return fmt.Errorf("--month %s --final: %s has not ended in the billing time zone %s (it ends at %s); final records are invoiced. Check the month, or add --allow-open-month to finalize it anyway",
				month, month, schemas.TimezoneName(c.loc), end.Format(time.RFC3339))
		}
	}
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, s.cfg.Brokers, c.partitions, c.replication, c.billing, s.alert.Topic); err != nil {
		return err
	}
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	r, err := rollup.New(s.cfg, conn)
	if err != nil {
		return err
	}
	defer r.Close()
	if s.month == "" {
		a, err := rollup.NewAlerter(s.alert, conn)
		if err != nil {
			return err
		}
		defer a.Close()
		stopOps, err := s.ops.serve([]prometheus.Collector{r.Collector(), a.Collector()}, r.Checks()...)
		if err != nil {
			return err
		}
		defer stopOps()
		return s.runDaemons(ctx, r, a)
	}
	if err := r.Repair(ctx); err != nil {
		return err
	}
	mode := rollup.Auto
	if s.final {
		mode = rollup.ForceFinal
	}
	if s.open {
		mode = rollup.ForceFinalOpen
	}
	res, err := r.Publish(ctx, month, mode)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d provisional, %d final, %d correction, %d unchanged\n",
		month, res.Provisional, res.Final, res.Correction, res.Unchanged)
	return nil
}

func runUsage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	r := newSettings(fs)
	var c common
	c.register(r)
	app := fs.Uint("app", 0, "SDKAppID")
	monthFlag := fs.String("month", "", "month YYYY-MM; default the current one")
	format := fs.String("format", "text", "text (statement, quota use and alerts) or json (the record)")
	var plans string
	r.str(&plans, "PLANS_FILE", false, "price book YAML (limits of the quota use); default the built-in one")
	if err := r.parse(args); err != nil {
		return err
	}
	if err := c.validate(false, true); err != nil {
		return err
	}
	if *app < 1 || *app > schemas.MaxAppID {
		return fmt.Errorf("--app: want an SDKAppID in 1..%d", uint64(schemas.MaxAppID))
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format: want text or json; got %q", *format)
	}
	month := schemas.MonthOf(time.Now(), c.loc)
	if *monthFlag != "" {
		var err error
		if month, err = schemas.ParseMonth(*monthFlag); err != nil {
			return fmt.Errorf("--month: %w", err)
		}
	}
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rec, err := rollup.Statement(ctx, conn, uint32(*app), month)
	noRecord := errors.Is(err, rollup.ErrNoRecord)
	if err != nil && !noRecord {
		return err
	}
	if *format == "json" {
		if noRecord {
			return fmt.Errorf("app %d has no billing record for %s yet (rollup publishes them)", *app, month)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rec)
	}
	if noRecord {
		fmt.Printf("App %d has no billing record for %s yet (rollup publishes them).\n", *app, month)
	} else {
		printStatement(os.Stdout, rec)
	}
	pb := rollup.DefaultPriceBook()
	if plans != "" {
		if pb, err = rollup.LoadPriceBook(plans); err != nil {
			return fmt.Errorf("PLANS_FILE: %w", err)
		}
	}
	usage, err := rollup.ReadMonth(ctx, conn, month, c.loc)
	if err != nil {
		return err
	}
	u := usage[uint32(*app)]
	if u == nil {
		u = &rollup.MonthUsage{App: uint32(*app), Month: month}
	}
	quotas, err := pb.Quotas(u)
	if err != nil {
		return err
	}
	alerts, err := rollup.AppAlerts(ctx, conn, uint32(*app), month, c.loc)
	if err != nil {
		return err
	}
	fmt.Println()
	printQuotas(os.Stdout, quotas, alerts, c.loc)
	return nil
}

// printQuotas writes the quota use (exact, from ClickHouse now) and the
// alerts of the month.
func printQuotas(w io.Writer, quotas []rollup.QuotaUse, alerts []schemas.Alert, loc *time.Location) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Quota use (now)\tedition\tused\n")
	names := map[string]string{
		schemas.AlertMAUQuota:           "Free MAU",
		schemas.AlertCommunityAllowance: "Community messages included",
		schemas.AlertDailyNetGroups:     "Daily net group increase (largest day)",
	}
	for _, q := range quotas {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", names[q.Kind], q.Edition, q.Use())
	}
	tw.Flush()
	fmt.Fprintln(w)
	if len(alerts) == 0 {
		fmt.Fprintln(w, "Alerts: none this month")
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Alerts\tperiod\tedition\tlevel\tvalue/limit\tdetected\n")
	for _, a := range alerts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d%%\t%d/%d\t%s\n", a.Kind, a.Period, a.Edition, a.Level, a.Value, a.Limit, a.At.In(loc).Format(time.RFC3339))
	}
	tw.Flush()
}

// printStatement writes a record as a statement a person reads.
func printStatement(w io.Writer, r schemas.BillingRecord) {
	fmt.Fprintf(w, "Statement for app %d, %s (billing time zone %s)\n", r.App, r.Month, r.Timezone)
	fmt.Fprintf(w, "Record: %s, revision %d, generated %s\n", r.Status, r.Revision, r.GeneratedAt.Format(time.RFC3339))
	var eds []string
	for _, s := range r.EditionDays {
		eds = append(eds, fmt.Sprintf("%s %s..%s (%d days)", s.Edition, s.From, s.To, s.Days))
	}
	fmt.Fprintf(w, "Edition at month end: %s; by day: %s\n\n", r.Edition, strings.Join(eds, ", "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	u := r.Usage
	fmt.Fprintf(tw, "Usage\t\t\n")
	line := func(name string, v uint64) { fmt.Fprintf(tw, "  %s\t%s\t\n", name, strconv.FormatUint(v, 10)) }
	line("Monthly active users (exact, billed)", u.MAU)
	line("Monthly active users (HLL estimate)", u.MAUEstimate)
	line("Logins", u.Logins)
	line("Messages, one-to-one", u.Messages.C2C)
	line("Messages, group", u.Messages.Group)
	line("Messages, community", u.Messages.Community)
	line("Messages, live", u.Messages.Live)
	line("Groups created", u.GroupsCreated)
	line("Groups dissolved", u.GroupsDissolved)
	fmt.Fprintf(tw, "  %s\t%d\t\n", "Largest daily net group increase", u.MaxDailyNetGroups)
	line("Audio call minutes", u.CallMinutes.Audio)
	line("Video call minutes", u.CallMinutes.Video)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Charge\tQuantity\tUnit\tUnit price\tAmount (%s)\n", r.Currency)
	for _, ch := range r.Charges {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.Item, ch.Quantity, ch.Unit, ch.UnitPrice, ch.Amount)
	}
	fmt.Fprintf(tw, "Total\t\t\t\t%s\n", r.Total)
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "Note: %s\n", n)
	}
}

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
	plans string
	tick  time.Duration
	month string
	final bool
}

func (s *rollupSettings) register(fs *flag.FlagSet) {
	d := rollup.DefaultConfig()
	fs.StringVar(&s.plans, "plans", env("PLANS_FILE", ""), "price book YAML; default the built-in one (PLANS_FILE)")
	fs.DurationVar(&s.cfg.Interval, "interval", envDuration("ROLLUP_INTERVAL", d.Interval), "provisional record interval (ROLLUP_INTERVAL)")
	fs.DurationVar(&s.cfg.SettleAfter, "settle-after", envDuration("SETTLE_AFTER", d.SettleAfter), "final records this long after the month ends (SETTLE_AFTER)")
	fs.DurationVar(&s.tick, "tick", envDuration("ROLLUP_TICK", time.Minute), "how often settlement and corrections are checked (ROLLUP_TICK)")
}

func (s *rollupSettings) build(c *common) error {
	if s.cfg.Interval <= 0 {
		return errors.New("ROLLUP_INTERVAL: want a positive duration like 1h")
	}
	if s.cfg.SettleAfter < 0 {
		return errors.New("SETTLE_AFTER: want a duration like 24h")
	}
	if s.tick <= 0 {
		return errors.New("ROLLUP_TICK: want a positive duration like 1m")
	}
	if s.plans != "" {
		pb, err := rollup.LoadPriceBook(s.plans)
		if err != nil {
			return fmt.Errorf("PLANS_FILE: %w", err)
		}
		s.cfg.Prices = pb
	}
	s.cfg.Brokers, s.cfg.Security = brokers(c.kafka), c.sec.kafka
	s.cfg.Topic, s.cfg.Location = c.billing, c.loc
	return nil
}

func runRollup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rollup", flag.ContinueOnError)
	var c common
	c.register(fs)
	var s rollupSettings
	s.register(fs)
	fs.StringVar(&s.month, "month", "", "roll up this month (YYYY-MM) once and exit")
	fs.BoolVar(&s.final, "final", false, "with --month: publish the final record now (or a correction if the month is final and changed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.validate(true, true); err != nil {
		return err
	}
	if err := s.build(&c); err != nil {
		return err
	}
	var month schemas.Month
	if s.month != "" {
		var err error
		if month, err = schemas.ParseMonth(s.month); err != nil {
			return fmt.Errorf("--month: %w", err)
		}
	} else if s.final {
		return errors.New("--final: needs --month")
	}
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, s.cfg.Brokers, c.partitions, 1, c.billing); err != nil {
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
		return r.Run(ctx, s.tick)
	}
	if err := r.Repair(ctx); err != nil {
		return err
	}
	mode := rollup.Auto
	if s.final {
		mode = rollup.ForceFinal
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
	var c common
	c.register(fs)
	app := fs.Uint("app", 0, "SDKAppID")
	monthFlag := fs.String("month", "", "month YYYY-MM; default the current one")
	format := fs.String("format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
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
	if errors.Is(err, rollup.ErrNoRecord) {
		return fmt.Errorf("app %d has no billing record for %s yet (rollup publishes them)", *app, month)
	}
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rec)
	}
	printStatement(os.Stdout, rec)
	return nil
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

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["plans"] = runPlans }

const plansUsage = `usage: immeter plans import [flags] FILE

Publishes one plan event per line of FILE ("-" for standard input) on the
events topic: the edition of each app and the instant it took effect, e.g. to
seed a new deployment with the editions apps already have. Lines are

  app,edition,from

with app an SDKAppID, edition developer, standard or premium, and from either
an RFC 3339 instant with an offset (2026-06-15T10:00:00+08:00) or a date
(2026-06-15: the start of that day in BILLING_TZ). Blank lines, lines starting
with # and a header line "app,edition,from" are skipped. The whole file is
checked before anything is published. Plan events are accepted at any age;
importing a file twice changes nothing (each line's event id is derived from
its content).
`

func runPlans(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprint(os.Stderr, plansUsage)
		return errors.New("want: plans import FILE")
	}
	fs := flag.NewFlagSet("plans import", flag.ContinueOnError)
	r := newSettings(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), plansUsage, "\nFlags:\n"); r.printDefaults() }
	var c common
	c.register(r)
	if err := r.parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("FILE: want one file of app,edition,from lines (- for standard input)")
	}
	if err := c.validate(true, false); err != nil {
		return err
	}
	name := fs.Arg(0)
	in := io.Reader(os.Stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	events, err := parsePlans(in, name, c.loc, time.Now())
	if err != nil {
		return err
	}
	bs := brokers(c.kafka)
	if err := prepareTopics(ctx, c.sec.kafka, bs, c.partitions, c.replication, c.events); err != nil {
		return err
	}
	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Security = bs, c.events, c.sec.kafka
	p, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	_, pubErr := p.PublishSync(ctx, events...)
	if err := errors.Join(pubErr, flushProducer(p)); err != nil {
		return fmt.Errorf("publish plan events to %s: %w", c.events, err)
	}
	fmt.Printf("%s: %d plan events published to %s\n", name, len(events), c.events)
	return nil
}

// parsePlans reads app,edition,from lines into plan events. It fails on the
// first bad line, naming it; a from later than now is refused (the
// aggregator would send it to the DLQ).
func parsePlans(r io.Reader, name string, loc *time.Location, now time.Time) ([]schemas.Event, error) {
	var out []schemas.Event
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || (n == 1 && strings.EqualFold(strings.ReplaceAll(line, " ", ""), "app,edition,from")) {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s: %s", name, n, line, fmt.Sprintf(format, args...))
		}
		f := strings.Split(line, ",")
		if len(f) != 3 {
			return nil, bad("want app,edition,from")
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		app, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || app < 1 {
			return nil, bad("app: want an SDKAppID in 1..%d", uint64(schemas.MaxAppID))
		}
		var from time.Time
		if d, err := time.Parse(time.DateOnly, f[2]); err == nil {
			from = schemas.DayFromDate(d.Date()).Start(loc)
		} else if from, err = time.Parse(time.RFC3339Nano, f[2]); err != nil {
			return nil, bad("from: want a date (2026-06-15) or an RFC 3339 instant with an offset (2026-06-15T10:00:00+08:00)")
		}
		if from.Unix() < 0 {
			return nil, bad("from: before 1970-01-01T00:00:00Z")
		}
		if from.After(now) {
			return nil, bad("from: %s is in the future; publish a plan change when it takes effect", from.Format(time.RFC3339))
		}
		e := schemas.Event{
			ID:      "plan-import:" + f[0] + ":" + f[1] + ":" + from.UTC().Format(time.RFC3339Nano),
			Type:    schemas.Plan,
			App:     uint32(app),
			Time:    from,
			Edition: f[1],
		}
		if err := e.Validate(); err != nil {
			return nil, bad("%v", err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no app,edition,from lines", name)
	}
	return out, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/simulate"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["run"] = runAll }

// runOptions is what `immeter run` runs with.
type runOptions struct {
	common
	agg      aggregate.Config
	roll     rollupSettings
	con      consoleSettings
	demo     string // staff token made up for the console when none is set
	gw       ingest.GatewayConfig
	secrets  string // no gateway when empty
	simulate bool
	simRate  float64
	simApps  int
	every    time.Duration
	ops      opsSettings
}

// parseRun reads the settings of `immeter run`. With KAFKA_BROKERS unset,
// what needs the brokers is checked once run has started its embedded
// broker: see check.
func parseRun(args []string) (*runOptions, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	r := newSettings(fs)
	o := &runOptions{agg: aggregate.DefaultConfig(), gw: ingest.DefaultGatewayConfig(), simRate: 2000, simApps: 8, every: 5 * time.Second}
	o.register(r)
	aggregateFlags(r, &o.agg)
	o.roll.register(r)
	o.con.register(r)
	o.gw.Addr = "127.0.0.1:8080"
	r.str(&o.gw.Addr, "INGEST_ADDR", true, "gateway listen address, used when IMMETER_SECRETS_FILE is set")
	r.str(&o.secrets, "IMMETER_SECRETS_FILE", false, "gateway secrets file; no gateway without it")
	gatewayFlags(r, &o.gw)
	r.boolean(&o.simulate, "SIMULATE", "publish simulated IM traffic")
	r.float(&o.simRate, "SIM_RATE", "simulated events per second")
	integer(r, &o.simApps, "SIM_APPS", 1, "simulated apps")
	r.duration(&o.every, "STATUS_EVERY", positiveDuration, "how often the status table is printed")
	o.ops.register(r)
	if err := r.parse(args); err != nil {
		return nil, err
	}
	if o.secrets != "" {
		var err error
		if o.gw, err = gatewayConfig(o.gw, o.secrets); err != nil {
			return nil, err
		}
	}
	if err := o.validate(false, true); err != nil {
		return nil, err
	}
	if o.kafka == "" {
		return o, nil // the rest is checked once the embedded broker runs
	}
	return o, o.check()
}

// check completes and checks the settings that need the Kafka brokers.
func (o *runOptions) check() error {
	if err := o.validate(true, true); err != nil {
		return err
	}
	o.agg = aggregateConfig(&o.common, o.agg)
	if err := o.agg.Validate(); err != nil {
		return err
	}
	if err := o.roll.build(&o.common); err != nil {
		return err
	}
	if !o.con.configured() && o.demo == "" {
		o.demo = o.con.demoToken()
	}
	return o.con.build(&o.common, o.roll.cfg.Prices)
}

// runAll runs the whole pipeline in one process: an embedded Kafka broker
// when KAFKA_BROKERS is unset, the gateway when secrets are configured, the
// aggregator, the rollup daemon and, with --simulate, simulated traffic; it
// prints the current month per app every few seconds. A component that
// fails stops the others, and runAll returns its error.
func runAll(ctx context.Context, args []string) error {
	o, err := parseRun(args)
	if err != nil {
		return err
	}
	c := &o.common
	if c.kafka == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(c.partitions), c.events, c.dlq, c.billing, o.roll.alert.Topic))
		if err != nil {
			return fmt.Errorf("embedded Kafka broker: %w", err)
		}
		defer cluster.Close()
		c.kafka = cluster.ListenAddrs()[0]
		slog.Info("run: embedded Kafka broker (KAFKA_BROKERS unset); events are lost when it stops", "addr", c.kafka)
		if err := o.check(); err != nil {
			return err
		}
	}
	rs := &o.roll

	agg, err := newAggregator(ctx, c, o.agg)
	if err != nil {
		return err
	}
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, rs.cfg.Brokers, c.partitions, c.replication, c.billing, rs.alert.Topic); err != nil {
		return err
	}
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	roll, err := rollup.New(rs.cfg, conn)
	if err != nil {
		return err
	}
	defer roll.Close()
	alerter, err := rollup.NewAlerter(rs.alert, conn)
	if err != nil {
		return err
	}
	defer alerter.Close()
	con, conLn, err := o.con.server(conn, o.demo)
	if err != nil {
		return err
	}

	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = brokers(c.kafka), c.events, true, c.sec.kafka
	producer, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	var gw *ingest.Gateway
	if o.secrets != "" {
		if gw, err = ingest.NewGateway(o.gw, producer); err != nil {
			return err
		}
	}

	opsCollectors := []prometheus.Collector{agg.Collector(), roll.Collector(), producer.Collector(), alerter.Collector()}
	opsChecks := append(agg.Checks(o.ops.failAfter), roll.Checks()...)
	opsChecks = append(opsChecks, producer.Checks()...)
	if gw != nil {
		opsCollectors[2] = gw.Collector() // the producer's and the gateway's
	}
	stopOps, err := o.ops.serve(opsCollectors, opsChecks...)
	if err != nil {
		return err
	}
	defer stopOps()

	// Stage one of shutdown stops intake (simulator, gateway) and flushes
	// the producer; stage two stops the aggregator (which flushes) and the
	// rollup.
	intake, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	pipeline, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	var wg, intakeWG sync.WaitGroup
	errs := make(chan error, 5)
	goRun := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun(&wg, "aggregate", func() error { return agg.Run(pipeline) })
	goRun(&wg, "rollup", func() error { return rs.runDaemons(pipeline, roll, alerter) })
	goRun(&wg, "console", func() error { return con.Serve(pipeline, conLn) })
	if gw != nil {
		goRun(&intakeWG, "ingest", func() error { return gw.ListenAndServe(intake) })
	}
	if o.simulate {
		scfg := simulate.DefaultTrafficConfig()
		scfg.Rate, scfg.Apps, scfg.Seed = o.simRate, o.simApps, uint64(time.Now().UnixNano())
		goRun(&intakeWG, "simulate", func() error {
			_, err := simulate.Traffic(intake, scfg, producer.Publish)
			return err
		})
	}

	t := time.NewTicker(o.every)
	defer t.Stop()
	var failed error // the first component that failed
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case failed = <-errs:
			slog.Error("run: component failed; stopping", "err", failed)
			break loop
		case <-t.C:
			if err := printStatus(ctx, os.Stdout, conn, roll, c.loc, agg.Stats()); err != nil {
				slog.Warn("run: status", "err", err)
			}
		}
	}
	slog.Info("run: stopping: intake first, then the pipeline")
	stopIntake()
	intakeWG.Wait()
	flushErr := flushProducer(producer)
	if flushErr != nil {
		flushErr = fmt.Errorf("producer flush: %w", flushErr)
	}
	stopPipeline()
	wg.Wait()
	close(errs)
	// Every failure counts, also one that came while stopping.
	all := []error{failed, flushErr}
	for err := range errs {
		all = append(all, err)
	}
	slog.Info("run: stopped")
	return errors.Join(all...)
}

// printStatus writes the current month per app: edition, MAU, logins,
// messages and the charges so far.
func printStatus(ctx context.Context, w io.Writer, conn driver.Conn, roll *rollup.Rollup, loc *time.Location, st aggregate.Stats) error {
	month := schemas.MonthOf(time.Now(), loc)
	usage, err := rollup.ReadMonth(ctx, conn, month, loc)
	if err != nil {
		return err
	}
	apps := make([]uint32, 0, len(usage))
	for app := range usage {
		apps = append(apps, app)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i] < apps[j] })
	fmt.Fprintf(w, "\n%s  month %s (%s)  events counted %d, duplicates %d, invalid %d\n",
		time.Now().In(loc).Format("15:04:05"), month, schemas.TimezoneName(loc), st.Counted, st.Duplicates, st.Rejected)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "app\tedition\tMAU\tfree MAU used\tMAU est.\tlogins\tmessages\tcall min\tcharges so far (USD)\t")
	for _, app := range apps {
		u := usage[app]
		rec, err := roll.Record(u)
		if err != nil {
			return err
		}
		m := u.Usage.Messages
		q, err := roll.Quotas(u)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t\n", app, rec.Edition, u.Usage.MAU, q[0].Use(), u.Usage.MAUEstimate,
			u.Usage.Logins, m.C2C+m.Group+m.Community+m.Live, u.Usage.CallMinutes.Audio+u.Usage.CallMinutes.Video, rec.Total)
	}
	return tw.Flush()
}

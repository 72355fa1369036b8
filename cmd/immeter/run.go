package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"github.com/immeter/immeter/rollup/console"
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
	if o.kafka == "" {
		stop, err := o.embedKafka()
		if err != nil {
			return err
		}
		defer stop()
	}
	p, err := o.wire(ctx)
	defer p.close()
	if err != nil {
		return err
	}
	return o.runComponents(ctx, p)
}

// embedKafka starts the embedded Kafka broker with the topics and checks
// the settings that needed the brokers; the returned function stops it.
func (o *runOptions) embedKafka() (stop func(), err error) {
	c := &o.common
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(c.partitions), c.events, c.dlq, c.billing, o.roll.alert.Topic))
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka broker: %w", err)
	}
	c.kafka = cluster.ListenAddrs()[0]
	slog.Info("run: embedded Kafka broker (KAFKA_BROKERS unset); events are lost when it stops", "addr", c.kafka)
	if err := o.check(); err != nil {
		cluster.Close()
		return nil, err
	}
	return cluster.Close, nil
}

// components are the parts of the pipeline that run wires together.
type components struct {
	agg      *aggregate.Aggregator
	conn     driver.Conn
	roll     *rollup.Rollup
	alerter  *rollup.Alerter
	con      *console.Server
	conLn    net.Listener
	producer *ingest.Producer
	gw       *ingest.Gateway // nil without IMMETER_SECRETS_FILE
	closers  []func()        // in the order opened
}

// close closes what was opened, the last first.
func (p *components) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// wire makes the components, the topics they need and the metrics server.
// On error, close closes what was made.
func (o *runOptions) wire(ctx context.Context) (*components, error) {
	c, rs := &o.common, &o.roll
	p := &components{}
	var err error
	if p.agg, err = newAggregator(ctx, c, o.agg); err != nil {
		return p, err
	}
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, rs.cfg.Brokers, c.partitions, c.replication, c.billing, rs.alert.Topic); err != nil {
		return p, err
	}
	if p.conn, err = c.clickhouse(ctx); err != nil {
		return p, err
	}
	p.closers = append(p.closers, func() { p.conn.Close() })
	if p.roll, err = rollup.New(rs.cfg, p.conn); err != nil {
		return p, err
	}
	p.closers = append(p.closers, func() { p.roll.Close() })
	if p.alerter, err = rollup.NewAlerter(rs.alert, p.conn); err != nil {
		return p, err
	}
	p.closers = append(p.closers, func() { p.alerter.Close() })
	if p.con, p.conLn, err = o.con.server(p.conn, o.demo); err != nil {
		return p, err
	}

	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = brokers(c.kafka), c.events, true, c.sec.kafka
	if p.producer, err = ingest.NewProducer(pcfg); err != nil {
		return p, err
	}
	if o.secrets != "" {
		if p.gw, err = ingest.NewGateway(o.gw, p.producer); err != nil {
			return p, err
		}
	}

	opsCollectors := []prometheus.Collector{p.agg.Collector(), p.roll.Collector(), p.producer.Collector(), p.alerter.Collector()}
	opsChecks := append(p.agg.Checks(o.ops.failAfter), p.roll.Checks()...)
	opsChecks = append(opsChecks, p.producer.Checks()...)
	if p.gw != nil {
		opsCollectors[2] = p.gw.Collector() // the producer's and the gateway's
	}
	stopOps, err := o.ops.serve(opsCollectors, opsChecks...)
	if err != nil {
		return p, err
	}
	p.closers = append(p.closers, stopOps)
	return p, nil
}

// runComponents runs the components until ctx ends or one fails, printing
// the status table every STATUS_EVERY, then stops them in two stages: first
// intake (simulator, gateway) and the producer's flush, then the aggregator
// (which flushes) and the rollup. It returns every failure, also those
// that came while stopping.
func (o *runOptions) runComponents(ctx context.Context, p *components) error {
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
	goRun(&wg, "aggregate", func() error { return p.agg.Run(pipeline) })
	goRun(&wg, "rollup", func() error { return o.roll.runDaemons(pipeline, p.roll, p.alerter) })
	goRun(&wg, "console", func() error { return p.con.Serve(pipeline, p.conLn) })
	if p.gw != nil {
		goRun(&intakeWG, "ingest", func() error { return p.gw.ListenAndServe(intake) })
	}
	if o.simulate {
		scfg := simulate.DefaultTrafficConfig()
		scfg.Rate, scfg.Apps, scfg.Seed = o.simRate, o.simApps, uint64(time.Now().UnixNano())
		goRun(&intakeWG, "simulate", func() error {
			_, err := simulate.Traffic(intake, scfg, p.producer.Publish)
			return err
		})
	}

	failed := o.watch(ctx, p, errs)
	slog.Info("run: stopping: intake first, then the pipeline")
	stopIntake()
	intakeWG.Wait()
	flushErr := flushProducer(p.producer)
	if flushErr != nil {
		flushErr = fmt.Errorf("producer flush: %w", flushErr)
	}
	stopPipeline()
	wg.Wait()
	close(errs)
	all := []error{failed, flushErr}
	for err := range errs {
		all = append(all, err)
	}
	slog.Info("run: stopped")
	return errors.Join(all...)
}

// watch prints the status table every STATUS_EVERY until ctx ends or a
// component fails, and returns that failure.
func (o *runOptions) watch(ctx context.Context, p *components, errs <-chan error) error {
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			slog.Error("run: component failed; stopping", "err", err)
			return err
		case <-t.C:
			if err := printStatus(ctx, os.Stdout, p.conn, p.roll, o.loc, p.agg.Stats()); err != nil {
				slog.Warn("run: status", "err", err)
			}
		}
	}
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

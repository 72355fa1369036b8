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
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

func init() { commands["run"] = runAll }

// runAll runs the whole pipeline in one process: an embedded Kafka broker
// when KAFKA_BROKERS is unset, the gateway when secrets are configured, the
// aggregator, the rollup daemon and, with --simulate, simulated traffic; it
// prints the current month per app every few seconds.
func runAll(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	var acfg aggregate.Config
	aggregateFlags(fs, &acfg)
	var rs rollupSettings
	rs.register(fs)
	simulate := fs.Bool("simulate", env("SIMULATE", "") == "1", "publish simulated IM traffic (SIMULATE=1)")
	simRate := fs.Float64("sim-rate", 2000, "simulated events per second")
	simApps := fs.Int("sim-apps", 8, "simulated apps")
	every := fs.Duration("status-every", envDuration("STATUS_EVERY", 5*time.Second), "how often the status table is printed (STATUS_EVERY)")
	gatewayAddr := fs.String("ingest-addr", env("INGEST_ADDR", "127.0.0.1:8080"), "gateway listen address, used when IMMETER_SECRETS_FILE is set (INGEST_ADDR)")
	secrets := fs.String("secrets", env("IMMETER_SECRETS_FILE", ""), "gateway secrets file; no gateway without it (IMMETER_SECRETS_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *every <= 0 {
		return errors.New("STATUS_EVERY: want a positive duration like 5s")
	}
	if *simRate <= 0 || *simApps < 1 {
		return errors.New("--sim-rate, --sim-apps: must be positive")
	}
	if c.kafka == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(c.partitions), c.events, c.dlq, c.billing))
		if err != nil {
			return fmt.Errorf("embedded Kafka broker: %w", err)
		}
		defer cluster.Close()
		c.kafka = cluster.ListenAddrs()[0]
		slog.Info("run: embedded Kafka broker (KAFKA_BROKERS unset); events are lost when it stops", "addr", c.kafka)
	}
	if err := c.validate(true, true); err != nil {
		return err
	}
	if err := rs.build(&c); err != nil {
		return err
	}

	agg, err := newAggregator(ctx, &c, acfg)
	if err != nil {
		return err
	}
	if err := ingest.EnsureTopicsWith(ctx, c.sec.kafka, rs.cfg.Brokers, c.partitions, 1, c.billing); err != nil {
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

	pcfg := ingest.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic, pcfg.Block, pcfg.Security = brokers(c.kafka), c.events, true, c.sec.kafka
	producer, err := ingest.NewProducer(pcfg)
	if err != nil {
		return err
	}
	var gw *ingest.Gateway
	if *secrets != "" {
		gcfg := ingest.DefaultGatewayConfig()
		gcfg.Addr = *gatewayAddr
		if gcfg.Secrets, err = ingest.LoadSecrets(*secrets); err != nil {
			return fmt.Errorf("IMMETER_SECRETS_FILE: %w", err)
		}
		if gw, err = ingest.NewGateway(gcfg, producer); err != nil {
			return err
		}
	}

	// Stage one of shutdown stops intake (simulator, gateway) and flushes
	// the producer; stage two stops the aggregator (which flushes) and the
	// rollup.
	intake, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	pipeline, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	var wg, intakeWG sync.WaitGroup
	errs := make(chan error, 4)
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
	goRun(&wg, "rollup", func() error { return roll.Run(pipeline, rs.tick) })
	if gw != nil {
		goRun(&intakeWG, "ingest", func() error { return gw.ListenAndServe(intake) })
		slog.Info("run: gateway listening", "addr", *gatewayAddr)
	}
	if *simulate {
		scfg := ingest.DefaultSimulateConfig()
		scfg.Rate, scfg.Apps, scfg.Seed = *simRate, *simApps, uint64(time.Now().UnixNano())
		goRun(&intakeWG, "simulate", func() error {
			_, err := ingest.Simulate(intake, scfg, producer.Publish)
			return err
		})
	}

	t := time.NewTicker(*every)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			slog.Error("run: component failed; stopping", "err", err)
			stopIntake()
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
	if err := flushProducer(producer); err != nil {
		slog.Error("run: producer flush", "err", err)
	}
	stopPipeline()
	wg.Wait()
	slog.Info("run: stopped")
	return nil
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
	fmt.Fprintln(tw, "app\tedition\tMAU\tMAU est.\tlogins\tmessages\tcall min\tcharges so far (USD)\t")
	for _, app := range apps {
		u := usage[app]
		rec, err := roll.Record(u)
		if err != nil {
			return err
		}
		m := u.Usage.Messages
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", app, rec.Edition, u.Usage.MAU, u.Usage.MAUEstimate,
			u.Usage.Logins, m.C2C+m.Group+m.Community+m.Live, u.Usage.CallMinutes.Audio+u.Usage.CallMinutes.Video, rec.Total)
	}
	return tw.Flush()
}

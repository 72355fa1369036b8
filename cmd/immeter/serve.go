package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immeter/immeter/telemetry"
)

// opsSettings are the flags of the metrics and health endpoints that every
// long-running command serves.
type opsSettings struct {
	addr      string
	failAfter time.Duration
}

func (o *opsSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "metrics-addr", env("METRICS_ADDR", telemetry.DefaultAddr), "listen address of /metrics, /healthz and /readyz; empty: none (METRICS_ADDR)")
	fs.DurationVar(&o.failAfter, "ready-fail-after", envDuration("READY_FAIL_AFTER", time.Minute), "/readyz fails once a partition's fetches or flushes have failed this long (READY_FAIL_AFTER)")
}

// validate checks the settings; commands call it with their other settings.
func (o *opsSettings) validate() error {
	if o.failAfter <= 0 {
		return errors.New("READY_FAIL_AFTER: want a positive duration like 1m")
	}
	return nil
}

// serve listens on METRICS_ADDR and serves the registry of cs and the
// checks until stop is called. A busy address fails the command at start.
func (o *opsSettings) serve(cs []prometheus.Collector, checks ...telemetry.Check) (stop func(), err error) {
	if o.addr == "" {
		return func() {}, nil
	}
	ln, err := telemetry.Listen(o.addr)
	if err != nil {
		return nil, err
	}
	h := telemetry.Handler(telemetry.NewRegistry(cs...), checks...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := telemetry.Serve(ctx, ln, h); err != nil {
			slog.Warn("metrics server", "err", err)
		}
	}()
	slog.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return func() { cancel(); <-done }, nil
}

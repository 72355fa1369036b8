package main

import (
	"context"
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

func (o *opsSettings) register(r *settings) {
	o.addr, o.failAfter = telemetry.DefaultAddr, time.Minute
	r.str(&o.addr, "METRICS_ADDR", false, "listen address of /metrics, /healthz and /readyz; empty: none")
	r.duration(&o.failAfter, "READY_FAIL_AFTER", positiveDuration, "/readyz fails once a partition's fetches or flushes have failed this long")
}

// validate checks the settings; commands call it with their other settings.
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

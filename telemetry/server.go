package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultAddr is where a command serves /metrics, /healthz and /readyz
// unless METRICS_ADDR says otherwise.
const DefaultAddr = ":9464"

// CheckTimeout bounds one readiness check.
const CheckTimeout = 3 * time.Second

// NewRegistry returns a registry with Collectors() and cs.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collectors()...)
	reg.MustRegister(cs...)
	return reg
}

// Collectors are what every command serves besides its components' own
// metrics: the Go runtime and process metrics, and the ClickHouse and
// Kafka counters of this package.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		clickhouseErrors, rowsWritten, kafkaErrors,
	}
}

// A Check says whether a component can do its work: nil when it can.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Handler serves:
//
//	GET /metrics  the registry in the Prometheus text format
//	GET /healthz  200 while the process answers
//	GET /readyz   200 when every check passes, else 503 with one line per failed check
func Handler(reg *prometheus.Registry, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := runChecks(r.Context(), checks)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// runChecks runs the checks at once and returns "name: error" for each failure, in order.
func runChecks(ctx context.Context, checks []Check) []string {
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			errs[i] = c.Func(cctx)
		})
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, checks[i].Name+": "+err.Error())
		}
	}
	return failed
}

// Listen opens addr for Serve; the error names METRICS_ADDR, the setting it comes from.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("METRICS_ADDR: %w", err)
	}
	return ln, nil
}

// Serve answers on ln until ctx ends, then closes it.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// ClickHouseCheck pings ClickHouse.
func ClickHouseCheck(conn driver.Conn) Check {
	return Check{Name: "clickhouse", Func: func(ctx context.Context) error {
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		return nil
	}}
}

// KafkaCheck connects to the brokers (a new connection each time: a
// client's cached metadata would hide an outage) and reads the partitions
// of topics: it fails while no broker answers or a topic is missing.
func KafkaCheck(brokers []string, topics ...string) Check {
	return Check{Name: "kafka", Func: func(ctx context.Context) error {
		var errs []error
		for _, b := range brokers {
			err := readPartitions(ctx, b, topics)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		kafkaErrors.WithLabelValues("metadata").Inc()
		return fmt.Errorf("metadata: %w", errors.Join(errs...))
	}}
}

func readPartitions(ctx context.Context, broker string, topics []string) error {
	d := kafka.Dialer{ClientID: "immeter-readyz"}
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	parts, err := conn.ReadPartitions(topics...)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range parts {
		seen[p.Topic] = true
	}
	for _, t := range topics {
		if !seen[t] {
			return fmt.Errorf("topic %s: not found", t)
		}
	}
	return nil
}

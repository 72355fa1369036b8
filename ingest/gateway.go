package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// The request headers that authenticate a POST /v1/events.
const (
	HeaderApp       = "X-Immeter-App"       // SDKAppID in decimal
	HeaderTimestamp = "X-Immeter-Timestamp" // Unix seconds when the request was signed
	HeaderSignature = "X-Immeter-Signature" // hex(HMAC-SHA256(secret, timestamp + "." + body))
)

// Sign returns the X-Immeter-Signature of body signed at timestamp (the
// X-Immeter-Timestamp header, exactly as sent) with an app's secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// GatewayConfig configures the HTTP gateway. Start from
// DefaultGatewayConfig: a zero field means zero, not the default (a zero
// ReadTimeout, WriteTimeout or ShutdownTimeout means none); only a nil Now
// takes the default.
type GatewayConfig struct {
	// Addr is where ListenAndServe listens (required by it). Default ":8080".
	Addr string
	// MaxBodyBytes bounds a request body; a larger one gets 413. Default 4 MiB.
	MaxBodyBytes int64
	// MaxEventBytes bounds one event in the body; a larger one is rejected.
	// Default 16 KiB.
	MaxEventBytes int
	// ReadTimeout bounds reading a whole request. Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the response; it must exceed PublishTimeout. Default 30s.
	WriteTimeout time.Duration
	// PublishTimeout is how long a request waits for Kafka's acknowledgement
	// before it gets 503. Default 10s.
	PublishTimeout time.Duration
	// ShutdownTimeout is how long Serve lets in-flight requests finish after
	// its ctx ended before it closes their connections. Default 30s.
	ShutdownTimeout time.Duration
	// MaxClockSkew is how far X-Immeter-Timestamp may be from the gateway's
	// clock, either way; it bounds how long a captured request can be
	// replayed. Default 5m.
	MaxClockSkew time.Duration
	// Secrets maps each app allowed to post to its HMAC secret. Required.
	// Load it with LoadSecrets; it is never logged.
	Secrets map[uint32][]byte
	// Now is the clock for the timestamp check. Default time.Now.
	Now func() time.Time
}

// DefaultGatewayConfig returns the defaults; Secrets must still be set.
func DefaultGatewayConfig() GatewayConfig {
	return GatewayConfig{
		Addr:            ":8080",
		MaxBodyBytes:    4 << 20,
		MaxEventBytes:   16 << 10,
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    30 * time.Second,
		PublishTimeout:  10 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		MaxClockSkew:    5 * time.Minute,
		Now:             time.Now,
	}
}

func (c *GatewayConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate names the first bad field.
func (c GatewayConfig) Validate() error {
	switch {
	case c.MaxBodyBytes < 1:
		return fmt.Errorf("ingest: GatewayConfig.MaxBodyBytes: must be >= 1; got %d", c.MaxBodyBytes)
	case c.MaxEventBytes < 1:
		return fmt.Errorf("ingest: GatewayConfig.MaxEventBytes: must be >= 1; got %d", c.MaxEventBytes)
	case c.ReadTimeout < 0:
		return fmt.Errorf("ingest: GatewayConfig.ReadTimeout: must be >= 0; got %s", c.ReadTimeout)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("ingest: GatewayConfig.PublishTimeout: must be > 0; got %s", c.PublishTimeout)
	case c.WriteTimeout > 0 && c.WriteTimeout <= c.PublishTimeout:
		return fmt.Errorf("ingest: GatewayConfig.WriteTimeout: must exceed PublishTimeout (%s); got %s", c.PublishTimeout, c.WriteTimeout)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("ingest: GatewayConfig.ShutdownTimeout: must be >= 0; got %s", c.ShutdownTimeout)
	case c.MaxClockSkew <= 0:
		return fmt.Errorf("ingest: GatewayConfig.MaxClockSkew: must be > 0; got %s", c.MaxClockSkew)
	case len(c.Secrets) == 0:
		return errors.New("ingest: GatewayConfig.Secrets: required: no app could authenticate")
	}
	for app, s := range c.Secrets {
		if len(s) == 0 {
			return fmt.Errorf("ingest: GatewayConfig.Secrets: app %d: empty secret", app)
		}
	}
	return nil
}

// Gateway is the HTTP front door for IM nodes that cannot speak Kafka:
//
//	POST /v1/events  one JSON event, a JSON array of events, or NDJSON
//	GET  /healthz    200 while the producer is open and Kafka answered last time
//
// A POST is authenticated by HMAC-SHA256 (see the Header constants and Sign)
// and answered only after Kafka acknowledged its events. The answer is a
// GatewayResponse with one result per event:
//
//   - 202: every valid event is stored in Kafka. Invalid ones, if any, are
//     listed as rejected with the reason; they were not published (there is
//     no 207: a mixed request is a 202 whose results say which ones).
//   - 400: no event was valid (or the body is empty or not JSON at all).
//   - 401: X-Immeter-App missing or unknown, X-Immeter-Timestamp missing or
//     more than MaxClockSkew away (a replayed old request), or a bad
//     signature.
//   - 403: some event's app is not the signing app. The whole request is
//     refused and nothing is published: one app's key never writes another
//     app's usage, even in part.
//   - 413: the body is larger than MaxBodyBytes; nothing is published.
//   - 503: Kafka did not acknowledge some valid event within PublishTimeout;
//     those are listed as rejected with the reason. Retry the request as it
//     is: the events that did get through are deduplicated downstream by id.
type Gateway struct {
	cfg GatewayConfig
	p   *Producer
}

// NewGateway checks cfg and returns a gateway publishing through p. The
// caller closes p after Serve returned.
func NewGateway(cfg GatewayConfig, p *Producer) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("ingest: NewGateway: nil producer")
	}
	return &Gateway{cfg: cfg, p: p}, nil
}

// route is one endpoint of the gateway. schemas/openapi.yaml documents
// exactly these (checked by a test).
type route struct {
	method, path string
	handle       http.HandlerFunc
}

func (g *Gateway) routes() []route {
	return []route{
		{http.MethodPost, "/v1/events", g.postEvents},
		{http.MethodGet, "/healthz", g.healthz},
	}
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range g.routes() {
		mux.Handle(r.method+" "+r.path, instrument(r.path, r.handle))
	}
	return mux
}

// ListenAndServe listens on cfg.Addr and calls Serve.
func (g *Gateway) ListenAndServe(ctx context.Context) error {
	if g.cfg.Addr == "" {
		return errors.New("ingest: GatewayConfig.Addr: required to listen")
	}
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingest: gateway: %w", err)
	}
	return g.Serve(ctx, ln)
}

// Serve answers requests on ln until ctx ends, then stops accepting
// connections and lets in-flight requests finish (up to ShutdownTimeout)
// before it returns. It closes ln.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g.Handler(),
		ReadTimeout:       g.cfg.ReadTimeout,
		ReadHeaderTimeout: min(g.cfg.ReadTimeout, 10*time.Second),
		WriteTimeout:      g.cfg.WriteTimeout,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	slog.Info("ingest: gateway listening", "addr", ln.Addr().String(), "apps", len(g.cfg.Secrets), "topic", g.p.Topic())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ingest: gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("ingest: gateway shutdown: in-flight requests cut after %s: %w", g.cfg.ShutdownTimeout, err)
	}
	<-errc
	return err
}

// GatewayResponse is the JSON answer to POST /v1/events.
type GatewayResponse struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Results  []EventResult `json:"results"`
	Error    string        `json:"error,omitempty"` // why the request as a whole failed
}

// EventResult is the outcome of the event at Index (0-based position in the
// array or among the non-blank NDJSON lines).
type EventResult struct {
	Index  int    `json:"index"`
	ID     string `json:"id,omitempty"`
	Status string `json:"status"` // "accepted" or "rejected"
	Reason string `json:"reason,omitempty"`
}

// Result statuses.
const (
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
)

func (g *Gateway) healthz(w http.ResponseWriter, r *http.Request) {
	if err := g.p.Healthy(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) postEvents(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		slog.Debug("ingest: request refused", "status", status, "reason", msg, "remote", r.RemoteAddr)
		writeJSON(w, status, GatewayResponse{Results: []EventResult{}, Error: msg})
	}

	// Authenticate what can be before reading the body.
	appHeader := r.Header.Get(HeaderApp)
	if appHeader == "" {
		fail(http.StatusUnauthorized, "%s: required", HeaderApp)
		return
	}
	app64, err := strconv.ParseUint(appHeader, 10, 32)
	secret := g.cfg.Secrets[uint32(app64)]
	if err != nil || secret == nil {
		fail(http.StatusUnauthorized, "%s: unknown app %.20q", HeaderApp, appHeader)
		return
	}
	app := uint32(app64)
	ts := r.Header.Get(HeaderTimestamp)
	if ts == "" {
		fail(http.StatusUnauthorized, "%s: required (Unix seconds)", HeaderTimestamp)
		return
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		fail(http.StatusUnauthorized, "%s: must be Unix seconds; got %.20q", HeaderTimestamp, ts)
		return
	}
	if skew := g.cfg.Now().Sub(time.Unix(sec, 0)); skew > g.cfg.MaxClockSkew || skew < -g.cfg.MaxClockSkew {
		fail(http.StatusUnauthorized, "%s: %s is outside ±%s of the gateway's clock (replayed or clock skew)", HeaderTimestamp, ts, g.cfg.MaxClockSkew)
		return
	}
	sig := r.Header.Get(HeaderSignature)
	if sig == "" {
		fail(http.StatusUnauthorized, "%s: required", HeaderSignature)
		return
	}

	body, err := readBody(w, r, g.cfg.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(http.StatusRequestEntityTooLarge, "body larger than %d bytes", g.cfg.MaxBodyBytes)
			return
		}
		fail(http.StatusBadRequest, "reading body: %v", err)
		return
	}
	want, _ := hex.DecodeString(Sign(secret, ts, body)) // of our own hex, cannot fail
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		fail(http.StatusUnauthorized, "%s: does not match the body", HeaderSignature)
		return
	}

	raws, err := splitEvents(body, r.Header.Get("Content-Type"))
	if err != nil {
		fail(http.StatusBadRequest, "%v", err)
		return
	}

	// Decode everything, then decide: nothing is published before the whole
	// request is known to be for the signing app.
	res := GatewayResponse{Results: make([]EventResult, len(raws))}
	msgs := make([]kafka.Message, len(raws))
	valid := make([]bool, len(raws))
	foreign := 0
	for i, raw := range raws {
		res.Results[i] = EventResult{Index: i, Status: StatusRejected}
		if len(raw) > g.cfg.MaxEventBytes {
			res.Results[i].ID = probeID(raw)
			res.Results[i].Reason = fmt.Sprintf("event too large: %d bytes, at most %d", len(raw), g.cfg.MaxEventBytes)
			continue
		}
		e, err := schemas.DecodeEvent(raw)
		if err != nil {
			res.Results[i].ID = probeID(raw)
			res.Results[i].Reason = err.Error()
			continue
		}
		res.Results[i].ID = e.ID
		if e.App != app {
			foreign++
			res.Results[i].Reason = fmt.Sprintf("app: %d is not the signing app %d (%s)", e.App, app, HeaderApp)
			continue
		}
		if msgs[i], err = g.p.message(&e, false); err != nil {
			res.Results[i].Reason = err.Error()
			continue
		}
		valid[i] = true
	}
	if foreign > 0 {
		for i := range res.Results {
			if valid[i] {
				res.Results[i].Reason = "not published: the request has events of another app"
			}
		}
		res.Rejected = len(raws)
		res.Error = fmt.Sprintf("%d events are not for app %d: request refused, nothing published", foreign, app)
		slog.Warn("ingest: request with events of another app", "app", app, "foreign", foreign, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusForbidden, res)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.PublishTimeout)
	defer cancel()
	errs := make([]error, len(raws))
	pubErr := g.p.publishSync(ctx, msgs, valid, errs)
	for i := range res.Results {
		if valid[i] {
			if errs[i] == nil {
				res.Results[i].Status = StatusAccepted
			} else {
				res.Results[i].Reason = "kafka: " + errs[i].Error()
			}
		}
		if res.Results[i].Status == StatusAccepted {
			res.Accepted++
		} else {
			res.Rejected++
		}
	}
	switch {
	case pubErr != nil:
		res.Error = "Kafka unavailable: " + pubErr.Error() + "; retry the request"
		slog.Warn("ingest: events not acknowledged by Kafka", "app", app, "events", len(raws), "err", pubErr)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, res)
	case res.Accepted == 0:
		res.Error = "no valid event"
		writeJSON(w, http.StatusBadRequest, res)
	default:
		writeJSON(w, http.StatusAccepted, res)
	}
}

// readBody reads the whole body, at most max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	return buf.Bytes(), err
}

// splitEvents cuts a body into raw events: a JSON array, a single JSON
// object, or NDJSON (by Content-Type application/x-ndjson, or a body that is
// neither of the others). Blank NDJSON lines are skipped.
func splitEvents(body []byte, contentType string) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: expected a JSON event, a JSON array of events or NDJSON")
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/x-ndjson":
	case trimmed[0] == '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, fmt.Errorf("malformed JSON array: %v", err)
		}
		if len(arr) == 0 {
			return nil, errors.New("empty array: no events")
		}
		raws := make([][]byte, len(arr))
		for i, a := range arr {
			raws[i] = a
		}
		return raws, nil
	case json.Valid(trimmed):
		return [][]byte{trimmed}, nil
	}
	var raws [][]byte
	for line := range bytes.SplitSeq(trimmed, []byte{'\n'}) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			raws = append(raws, line)
		}
	}
	return raws, nil
}

// probeID digs the id out of an event that failed the contract, for the
// client's benefit; "" when there is none.
func probeID(raw []byte) string {
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	id, _ := v.ID.(string)
	if len(id) > schemas.MaxIDBytes {
		return ""
	}
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Package console serves the usage console: a JSON API and web pages of each
// app's month, for the provider's staff (all apps) and app owners (their app).
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	Addr string // CONSOLE_ADDR; default 127.0.0.1:8090
	// StaffToken is the bearer token of the provider's staff: every app
	// (CONSOLE_STAFF_TOKEN or CONSOLE_STAFF_TOKEN_FILE). At least 16 bytes.
	StaffToken []byte
	// AppTokens are the tokens of app owners: each sees only its app
	// (CONSOLE_SECRETS_FILE, lines app=token as the gateway's secrets).
	AppTokens map[uint32][]byte
	Location  *time.Location    // billing time zone (BILLING_TZ); default +08:00
	Prices    *rollup.PriceBook // PLANS_FILE; default rollup.DefaultPriceBook()
	Refresh   time.Duration     // how often the pages reload; default 10s, > 0
	Now       func() time.Time  // default time.Now
	Logger    *slog.Logger      // nil: slog.Default() when the value is made (after the command set the log level)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	d := rollup.DefaultConfig()
	return Config{
		Addr:     "127.0.0.1:8090",
		Location: d.Location,
		Prices:   rollup.DefaultPriceBook(),
		Refresh:  10 * time.Second,
		Now:      time.Now,
	}
}

// minToken is the shortest token accepted.
const minToken = 16

// Validate reports the first bad field by the name of its setting.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("CONSOLE_ADDR: must not be empty")
	case len(c.StaffToken) == 0 && len(c.AppTokens) == 0:
		return errors.New("CONSOLE_STAFF_TOKEN: required unless CONSOLE_SECRETS_FILE names app tokens (every request needs a credential)")
	case len(c.StaffToken) > 0 && len(c.StaffToken) < minToken:
		return fmt.Errorf("CONSOLE_STAFF_TOKEN: must be at least %d bytes; got %d", minToken, len(c.StaffToken))
	case c.Location == nil:
		return errors.New("BILLING_TZ: required")
	case c.Prices == nil:
		return errors.New("PLANS_FILE: required")
	case c.Refresh <= 0:
		return fmt.Errorf("CONSOLE_REFRESH: must be > 0; got %s", c.Refresh)
	}
	seen := map[[32]byte]uint32{sha256.Sum256(c.StaffToken): 0}
	for app, tok := range c.AppTokens {
		if len(tok) < minToken {
			return fmt.Errorf("CONSOLE_SECRETS_FILE: app %d: token must be at least %d bytes; got %d", app, minToken, len(tok))
		}
		h := sha256.Sum256(tok)
		if other, dup := seen[h]; dup {
			if other == 0 {
				return fmt.Errorf("CONSOLE_SECRETS_FILE: app %d: token equals CONSOLE_STAFF_TOKEN", app)
			}
			return fmt.Errorf("CONSOLE_SECRETS_FILE: apps %d and %d have the same token", min(app, other), max(app, other))
		}
		seen[h] = app
	}
	return nil
}

// Server answers the console's API and pages from ClickHouse.
type Server struct {
	cfg    Config
	conn   driver.Conn
	staff  [32]byte            // hash of the staff token; zero when none
	tokens map[[32]byte]uint32 // hash of an app token → its app
}

// New returns a Server reading through conn (migrated).
func New(cfg Config, conn driver.Conn) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, conn: conn, tokens: map[[32]byte]uint32{}}
	if len(cfg.StaffToken) > 0 {
		s.staff = sha256.Sum256(cfg.StaffToken)
	}
	for app, tok := range cfg.AppTokens {
		s.tokens[sha256.Sum256(tok)] = app
	}
	return s, nil
}

// Handler returns the routes:
//
//	GET /healthz                         no credentials
//	GET /v1/apps?month=YYYY-MM           the month's apps (JSON)
//	GET /v1/apps/{app}/months/{month}    one app's month (JSON)
//	GET /                                the apps page
//	GET /apps/{app}?month=YYYY-MM        one app's month page
//
// Credentials: "Authorization: Bearer <token>", or HTTP Basic with the token
// as the password (what a browser can send). A request without a valid
// token is 401; an app token asking for another app is 403.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /v1/apps", s.auth(s.apiApps))
	mux.HandleFunc("GET /v1/apps/{app}/months/{month}", s.auth(s.apiAppMonth))
	mux.HandleFunc("GET /{$}", s.auth(s.pageApps))
	mux.HandleFunc("GET /apps/{app}", s.auth(s.pageApp))
	return mux
}

// ListenAndServe serves on cfg.Addr until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.cfg.Logger.Info("console: serving", "url", "http://"+ln.Addr().String()+"/")
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// principal is who a request is from: the staff (app 0) or one app's owner.
type principal struct{ app uint32 }

func (p principal) mayRead(app uint32) bool { return p.app == 0 || p.app == app }

type handler func(w http.ResponseWriter, r *http.Request, p principal)

// auth admits requests with a valid token.
func (s *Server) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.principal(r)
		if !ok {
			w.Header().Add("WWW-Authenticate", `Bearer realm="immeter console"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="immeter console", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "a valid token is required: Authorization: Bearer <token>")
			return
		}
		h(w, r, p)
	}
}

func (s *Server) principal(r *http.Request) (principal, bool) {
	var tok string
	if _, pw, ok := r.BasicAuth(); ok {
		tok = pw
	} else if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tok = strings.TrimSpace(v)
	}
	if tok == "" {
		return principal{}, false
	}
	h := sha256.Sum256([]byte(tok))
	if s.staff != ([32]byte{}) && subtle.ConstantTimeCompare(h[:], s.staff[:]) == 1 {
		return principal{}, true
	}
	if app, ok := s.tokens[h]; ok {
		return principal{app: app}, true
	}
	return principal{}, false
}

// month reads the month query parameter or path value; empty means the
// current month.
func (s *Server) month(v string) (schemas.Month, error) {
	if v == "" {
		return schemas.MonthOf(s.cfg.Now(), s.cfg.Location), nil
	}
	m, err := schemas.ParseMonth(v)
	if err != nil {
		return m, fmt.Errorf("month: want YYYY-MM; got %.20q", v)
	}
	return m, nil
}

func parseApp(v string) (uint32, error) {
	app, err := strconv.ParseUint(v, 10, 32)
	if err != nil || app < 1 || app > schemas.MaxAppID {
		return 0, fmt.Errorf("app: want an SDKAppID in 1..%d; got %.20q", uint64(schemas.MaxAppID), v)
	}
	return uint32(app), nil
}

// AppsResponse is the body of GET /v1/apps.
type AppsResponse struct {
	Month    string              `json:"month"`
	Timezone string              `json:"timezone"`
	Apps     []rollup.AppSummary `json:"apps"`
}

// apps reads the month's apps the principal may see.
func (s *Server) apps(ctx context.Context, m schemas.Month, p principal) (*AppsResponse, error) {
	all, err := rollup.ReadApps(ctx, s.conn, m)
	if err != nil {
		return nil, err
	}
	out := &AppsResponse{Month: m.String(), Timezone: schemas.TimezoneName(s.cfg.Location), Apps: []rollup.AppSummary{}}
	for _, a := range all {
		if p.mayRead(a.App) {
			out.Apps = append(out.Apps, a)
		}
	}
	return out, nil
}

func (s *Server) apiApps(w http.ResponseWriter, r *http.Request, p principal) {
	m, err := s.month(r.URL.Query().Get("month"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := s.apps(r.Context(), m, p)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// appMonth checks the request's app and month and reads them; it writes the
// error response itself and returns nil then.
func (s *Server) appMonth(w http.ResponseWriter, r *http.Request, p principal, month string) *rollup.AppMonth {
	app, err := parseApp(r.PathValue("app"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	if !p.mayRead(app) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("this token may not read app %d", app))
		return nil
	}
	m, err := s.month(month)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	am, err := rollup.ReadAppMonth(r.Context(), s.conn, app, m, s.cfg.Location, s.cfg.Prices, s.cfg.Now())
	if err != nil {
		s.unavailable(w, err)
		return nil
	}
	return am
}

func (s *Server) apiAppMonth(w http.ResponseWriter, r *http.Request, p principal) {
	if am := s.appMonth(w, r, p, r.PathValue("month")); am != nil {
		writeJSON(w, http.StatusOK, am)
	}
}

func (s *Server) unavailable(w http.ResponseWriter, err error) {
	s.cfg.Logger.Warn("console: read", "err", err)
	writeError(w, http.StatusServiceUnavailable, "usage store unavailable; retry")
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

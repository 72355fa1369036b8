package console

import (
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The tests here need no ClickHouse: every request they send is refused
// before any read. cmd/immeter's TestConsole runs the accepted ones on the
// real server, and the pages in Chromium.

const (
	staff = "staff-token-0123456789"
	app1  = uint32(1400000001)
	app2  = uint32(1400000002)
	tok1  = "app-one-token-0123456789"
)

func newTestServer(t *testing.T) *Server {
	cfg := DefaultConfig()
	cfg.StaffToken = []byte(staff)
	cfg.AppTokens = map[uint32][]byte{app1: []byte(tok1)}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	for _, c := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) {}, "CONSOLE_STAFF_TOKEN: required"},
		{func(c *Config) { c.StaffToken = []byte("short") }, "CONSOLE_STAFF_TOKEN: must be at least 16 bytes"},
		{func(c *Config) { c.AppTokens = map[uint32][]byte{app1: []byte("short")} }, "CONSOLE_SECRETS_FILE: app 1400000001: token must be"},
		{func(c *Config) { c.StaffToken = []byte(staff); c.AppTokens = map[uint32][]byte{app1: []byte(staff)} }, "CONSOLE_SECRETS_FILE: app 1400000001: token equals CONSOLE_STAFF_TOKEN"},
		{func(c *Config) { c.AppTokens = map[uint32][]byte{app1: []byte(tok1), app2: []byte(tok1)} }, "CONSOLE_SECRETS_FILE: apps 1400000001 and 1400000002 have the same token"},
		{func(c *Config) { c.StaffToken = []byte(staff); c.Addr = "" }, "CONSOLE_ADDR: must not be empty"},
		{func(c *Config) { c.StaffToken = []byte(staff); c.Refresh = 0 }, "CONSOLE_REFRESH: must be > 0"},
	} {
		cfg := DefaultConfig()
		c.set(&cfg)
		if _, err := New(cfg, nil); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("got %v; want an error starting %q", err, c.want)
		}
	}
}

func serve(s *Server, path, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// TestRefused: requests without a valid token are 401, an app token on
// another app 403, bad parameters 400; none reads anything.
func TestRefused(t *testing.T) {
	s := newTestServer(t)
	basic := func(user, pw string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(user, pw)
		return r.Header.Get("Authorization")
	}
	paths := []string{"/", "/?month=2026-10", "/v1/apps", "/v1/apps?month=2026-10",
		"/apps/1400000002", "/v1/apps/1400000002/months/2026-10", "/apps/1400000001", "/v1/apps/1400000001/months/2026-10"}
	for _, p := range paths {
		for _, auth := range []string{"", "Bearer ", "Bearer wrong-token-0123456789", "Bearer " + staff[:8], "Bearer " + staff + "x",
			staff, "Basic !!", basic(staff, ""), basic("", tok1+"x"), "Bearer " + strings.ToUpper(tok1)} {
			w := serve(s, p, auth)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s with %q: got %d; want 401", p, auth, w.Code)
			}
			if h := w.Header().Values("WWW-Authenticate"); len(h) != 2 || !strings.HasPrefix(h[1], "Basic ") {
				t.Errorf("%s: WWW-Authenticate %q; want Bearer and Basic", p, h)
			}
		}
	}
	for _, p := range []string{"/apps/1400000002", "/v1/apps/1400000002/months/2026-10", "/apps/1400000002?month=2026-10"} {
		for _, auth := range []string{"Bearer " + tok1, basic("x", tok1)} {
			if w := serve(s, p, auth); w.Code != http.StatusForbidden {
				t.Errorf("%s with app 1's token: got %d; want 403", p, w.Code)
			}
		}
	}
	for _, p := range []string{"/v1/apps/0/months/2026-10", "/v1/apps/x/months/2026-10", "/v1/apps/4294967296/months/2026-10",
		"/v1/apps/1400000001/months/2026-13", "/v1/apps?month=2026-1", "/apps/1400000001?month=oct", "/?month=10-2026"} {
		if w := serve(s, p, "Bearer "+staff); w.Code != http.StatusBadRequest {
			t.Errorf("%s: got %d; want 400", p, w.Code)
		}
	}
	if w := serve(s, "/healthz", ""); w.Code != http.StatusOK {
		t.Errorf("/healthz: got %d; want 200", w.Code)
	}
}

// TestOpenAPIRoutes: schemas/console.openapi.yaml documents the JSON routes.
func TestOpenAPIRoutes(t *testing.T) {
	b, err := os.ReadFile("../../schemas/console.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for p, ops := range doc.Paths {
		for m := range ops {
			got = append(got, strings.ToUpper(m)+" "+p)
		}
	}
	slices.Sort(got)
	want := []string{"GET /healthz", "GET /v1/apps", "GET /v1/apps/{app}/months/{month}"}
	if !slices.Equal(got, want) {
		t.Errorf("console.openapi.yaml documents %v; the handler serves %v", got, want)
	}
}

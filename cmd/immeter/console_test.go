package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/rollup/console"
	"github.com/immeter/immeter/schemas"
)

const (
	staffToken = "staff-token-0123456789"
	devToken   = "dev-owner-token-0123456789"
	premToken  = "premium-owner-token-0123456789"
)

// consoleEnv is the console on the real broker and server, over the
// end-to-end stream: October final, November provisional.
type consoleEnv struct {
	env    *testEnv
	url    string
	oct    map[uint32]schemas.BillingRecord // the final records published
	nov    map[uint32]schemas.BillingRecord // the provisional records published
	client *http.Client
	stream *stream // the events published, and their truth
}

func newConsoleEnv(ctx context.Context, t *testing.T) *consoleEnv {
	env := integration(t)
	loc, _ := schemas.ParseTimezone("+08:00")
	s := buildStream(loc)
	env.produce(ctx, t, env.events, s.msgs)
	clock := shiftedClock(time.Date(2026, 11, 25, 12, 0, 0, 0, loc))
	agg, err := aggregate.New(testAggregateConfig(env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 200*time.Millisecond, clock
	}), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agg.Run(aggCtx) }()
	env.waitAggregated(ctx, t, env.events)
	stopAgg()
	if err := <-done; err != nil {
		t.Fatalf("aggregate: %v", err)
	}
	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location = loc; c.Now = clock }), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Publish(ctx, schemas.Month{Year: 2026, Month: time.October}, rollup.ForceFinal); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(ctx, schemas.Month{Year: 2026, Month: time.November}, rollup.Auto); err != nil {
		t.Fatal(err)
	}
	ce := &consoleEnv{env: env, oct: map[uint32]schemas.BillingRecord{}, nov: map[uint32]schemas.BillingRecord{},
		client: &http.Client{Timeout: 30 * time.Second}, stream: s}
	for _, rec := range env.readBilling(ctx, t, 6) {
		if rec.Month == "2026-10" {
			ce.oct[rec.App] = rec
		} else {
			ce.nov[rec.App] = rec
		}
	}
	if len(ce.oct) != 3 || len(ce.nov) != 3 {
		t.Fatalf("unexpected records: %d October, %d November; want 3 and 3", len(ce.oct), len(ce.nov))
	}

	cfg := console.DefaultConfig()
	cfg.StaffToken = []byte(staffToken)
	cfg.AppTokens = map[uint32][]byte{appDev: []byte(devToken), appPremium: []byte(premToken)}
	cfg.Location, cfg.Now = loc, clock
	srv, err := console.New(cfg, env.conn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("console: %v", err)
		}
	})
	ce.url = "http://" + ln.Addr().String()
	return ce
}

// get sends a GET with the given Authorization header ("" for none).
func (ce *consoleEnv) get(t *testing.T, path, auth string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ce.url+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := ce.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func bearer(tok string) string { return "Bearer " + tok }

func basic(tok string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth("anyone", tok)
	return req.Header.Get("Authorization")
}

func basicUser(user string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, "")
	return req.Header.Get("Authorization")
}

func TestConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ce := newConsoleEnv(ctx, t)

	t.Run("access", func(t *testing.T) { testConsoleAccess(t, ce) })
	t.Run("figures", func(t *testing.T) { testConsoleFigures(t, ce) })
	t.Run("list migrated", func(t *testing.T) { testConsoleListMigrated(ctx, t, ce) })
	t.Run("browser", func(t *testing.T) { testConsoleBrowser(ctx, t, ce) })
	t.Run("latency", func(t *testing.T) { testConsoleLatency(t, ce) })
}

// testConsoleLatency logs the latency of one app's month over 100 requests
// (BENCHMARKS.md); it asserts nothing, the machine is shared.
func testConsoleLatency(t *testing.T, ce *consoleEnv) {
	var d []time.Duration
	for range 100 {
		start := time.Now()
		if code, _ := ce.get(t, fmt.Sprintf("/v1/apps/%d/months/2026-10", appPremium), bearer(staffToken)); code != 200 {
			t.Fatalf("got %d", code)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	t.Logf("GET /v1/apps/{app}/months/{month}, 100 requests: p50 %v, p99 %v, max %v", d[49], d[98], d[99])
}

// testConsoleAccess is the accept/reject matrix: every route, every kind of
// credential.
func testConsoleAccess(t *testing.T, ce *consoleEnv) {
	dev, prem, std := fmt.Sprint(appDev), fmt.Sprint(appPremium), fmt.Sprint(appStandard)
	routes := map[string]string{ // name → path; {app} is replaced
		"api app":  "/v1/apps/{app}/months/2026-10",
		"page app": "/apps/{app}?month=2026-10",
	}
	type cred struct {
		name, auth string
		app        string // the app the credential may read; "" all
	}
	creds := []cred{
		{"staff bearer", bearer(staffToken), ""},
		{"staff basic", basic(staffToken), ""},
		{"dev owner", bearer(devToken), dev},
		{"premium owner basic", basic(premToken), prem},
	}
	bad := []struct{ name, auth string }{
		{"none", ""},
		{"unknown token", bearer("not-a-token-0123456789")},
		{"staff token with a suffix", bearer(staffToken + "x")},
		{"staff token prefix", bearer(staffToken[:10])},
		{"empty bearer", "Bearer "},
		{"token without scheme", staffToken},
		{"basic empty password", basic("")},
		{"token as the user name", basicUser(devToken)},
	}
	for name, path := range routes {
		for _, app := range []string{dev, prem, std} {
			p := strings.ReplaceAll(path, "{app}", app)
			for _, c := range creds {
				want := http.StatusOK
				if c.app != "" && c.app != app {
					want = http.StatusForbidden
				}
				if got, body := ce.get(t, p, c.auth); got != want {
					t.Errorf("%s app %s, %s: got %d; want %d: %.200s", name, app, c.name, got, want, body)
				}
			}
			for _, b := range bad {
				if got, body := ce.get(t, p, b.auth); got != http.StatusUnauthorized {
					t.Errorf("%s app %s, %s: got %d; want 401: %.200s", name, app, b.name, got, body)
				}
			}
		}
	}
	for _, p := range []string{"/v1/apps?month=2026-10", "/?month=2026-10", "/v1/apps/0/months/2026-10", "/apps/x"} {
		for _, b := range bad {
			if got, _ := ce.get(t, p, b.auth); got != http.StatusUnauthorized {
				t.Errorf("%s, %s: got %d; want 401", p, b.name, got)
			}
		}
	}
	// Bad parameters, with valid credentials.
	for _, p := range []string{"/v1/apps/0/months/2026-10", "/v1/apps/x/months/2026-10", "/v1/apps/1400000001/months/2026-13", "/v1/apps?month=oct"} {
		if got, _ := ce.get(t, p, bearer(staffToken)); got != http.StatusBadRequest {
			t.Errorf("%s: got %d; want 400", p, got)
		}
	}
	if got, _ := ce.get(t, "/healthz", ""); got != http.StatusOK {
		t.Errorf("/healthz: got %d; want 200", got)
	}
	// The list: staff sees every app, an owner only its own.
	for _, c := range []struct {
		auth string
		want []uint32
	}{{bearer(staffToken), []uint32{appDev, appStandard, appPremium}}, {bearer(premToken), []uint32{appPremium}}} {
		code, body := ce.get(t, "/v1/apps?month=2026-10", c.auth)
		var list console.AppsResponse
		if err := json.Unmarshal(body, &list); code != 200 || err != nil {
			t.Fatalf("list: %d %v: %s", code, err, body)
		}
		var got []uint32
		for _, a := range list.Apps {
			got = append(got, a.App)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("list: got apps %v; want %v", got, c.want)
		}
	}
}

// appMonth reads one app's month from the API as the staff.
func (ce *consoleEnv) appMonth(t *testing.T, app uint32, month string) rollup.AppMonth {
	t.Helper()
	code, body := ce.get(t, fmt.Sprintf("/v1/apps/%d/months/%s", app, month), bearer(staffToken))
	var am rollup.AppMonth
	if err := json.Unmarshal(body, &am); code != 200 || err != nil {
		t.Fatalf("app %d %s: %d %v: %s", app, month, code, err, body)
	}
	return am
}

// testConsoleFigures checks the API against the billing records on the topic.
func testConsoleFigures(t *testing.T, ce *consoleEnv) {
	for _, c := range []struct {
		month string
		recs  map[uint32]schemas.BillingRecord
		final bool
	}{{"2026-10", ce.oct, true}, {"2026-11", ce.nov, false}} {
		for app, rec := range c.recs {
			am := ce.appMonth(t, app, c.month)
			got, _ := json.Marshal(am.Record)
			want, _ := json.Marshal(rec)
			if string(got) != string(want) {
				t.Errorf("app %d %s: the console's record differs from the billing record:\n got %s\nwant %s", app, c.month, got, want)
			}
			if am.Final != c.final || len(am.Revisions) != 1 || !am.Revisions[0].Published {
				t.Errorf("app %d %s: final %v, %d revisions; want final %v, 1 published", app, c.month, am.Final, len(am.Revisions), c.final)
			}
			m, _ := schemas.ParseMonth(c.month)
			var sum schemas.Usage
			for _, d := range am.Days {
				sum.Logins += d.Logins
				sum.Messages.C2C += d.Messages.C2C
				sum.Messages.Group += d.Messages.Group
				sum.Messages.Community += d.Messages.Community
				sum.Messages.Live += d.Messages.Live
				sum.GroupsCreated += d.GroupsCreated
				sum.GroupsDissolved += d.GroupsDissolved
				sum.CallSeconds.Audio += d.CallSeconds.Audio
				sum.CallSeconds.Video += d.CallSeconds.Video
			}
			u := rec.Usage
			if len(am.Days) != m.Days() || sum.Logins != u.Logins || sum.Messages != u.Messages ||
				sum.GroupsCreated != u.GroupsCreated || sum.GroupsDissolved != u.GroupsDissolved || sum.CallSeconds != u.CallSeconds {
				t.Errorf("app %d %s: the %d days add up to %+v; the record has %+v", app, c.month, len(am.Days), sum, u)
			}
			// Each day where the stream put it, in the billing time zone.
			for _, d := range am.Days {
				day, _ := time.Parse(time.DateOnly, d.Day)
				want := ce.stream.want.Months[m][app].Net[schemas.DayFromDate(day.Year(), day.Month(), day.Day())]
				if d.GroupsNet != want {
					t.Errorf("app %d %s: net groups %d; the stream has %d", app, d.Day, d.GroupsNet, want)
				}
			}
			if len(am.Quotas) == 0 || am.Quotas[0].Name != "mau" || am.Quotas[0].Used != int64(u.MAU) {
				t.Errorf("app %d %s: unexpected quotas %+v", app, c.month, am.Quotas)
			}
		}
	}
}

// chromium returns the path of the chromium binary: make test installs it
// (.ci/chromium.sh); without IMMETER_INTEGRATION=1 the test is skipped when
// it is missing.
func chromium(t *testing.T) string {
	p, err := exec.LookPath("chromium")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("chromium not found: run .ci/chromium.sh install (make test does)")
		}
		t.Skip("chromium not installed (.ci/chromium.sh install)")
	}
	return p
}

// runChromium runs headless Chromium on url with a fresh profile.
func runChromium(ctx context.Context, t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

var (
	figureAttr = regexp.MustCompile(`data-figure="([^"]+)">([^<]*)<`)
	chargeAttr = regexp.MustCompile(`data-charge="([^"]+)">([^<]*)<`)
	quotaAttr  = regexp.MustCompile(`data-quota="([^"]+)">([^<]*)<`)
)

// shown returns what the page shows by data attribute.
func shown(re *regexp.Regexp, dom []byte) map[string]string {
	out := map[string]string{}
	for _, m := range re.FindAllSubmatch(dom, -1) {
		out[string(m[1])] = string(m[2])
	}
	return out
}

// testConsoleBrowser loads the pages in headless Chromium, checks that the
// figures shown are the API's and the billing record's, and saves
// screenshots at a phone's and a desktop's window size.
func testConsoleBrowser(ctx context.Context, t *testing.T, ce *consoleEnv) {
	bin := chromium(t)
	host := strings.TrimPrefix(ce.url, "http://")
	pageURL := func(tok, path string) string { return "http://owner:" + tok + "@" + host + path }

	for _, c := range []struct {
		app   uint32
		month string
		rec   schemas.BillingRecord
		tok   string
	}{
		{appPremium, "2026-10", ce.oct[appPremium], staffToken},
		{appPremium, "2026-11", ce.nov[appPremium], premToken},
		{appStandard, "2026-10", ce.oct[appStandard], staffToken},
	} {
		am := ce.appMonth(t, c.app, c.month)
		dom := runChromium(ctx, t, bin, "--dump-dom", pageURL(c.tok, fmt.Sprintf("/apps/%d?month=%s", c.app, c.month)))
		u := c.rec.Usage
		want := map[string]string{
			"app": fmt.Sprint(c.rec.App), "month": c.rec.Month, "status": c.rec.Status, "edition": c.rec.Edition,
			"total": c.rec.Total, "currency": c.rec.Currency, "mau": fmt.Sprint(u.MAU), "logins": fmt.Sprint(u.Logins),
			"messages.c2c": fmt.Sprint(u.Messages.C2C), "messages.group": fmt.Sprint(u.Messages.Group),
			"messages.community": fmt.Sprint(u.Messages.Community), "messages.live": fmt.Sprint(u.Messages.Live),
			"groups_created": fmt.Sprint(u.GroupsCreated), "groups_dissolved": fmt.Sprint(u.GroupsDissolved),
			"call_minutes.audio": fmt.Sprint(u.CallMinutes.Audio), "call_minutes.video": fmt.Sprint(u.CallMinutes.Video),
			"revision-total": am.Revisions[len(am.Revisions)-1].Total,
		}
		if am.Record.Total != c.rec.Total || am.Record.Usage != u {
			t.Errorf("app %d %s: API and billing record differ: %+v vs %+v", c.app, c.month, am.Record, c.rec)
		}
		got := shown(figureAttr, dom)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("app %d %s: the page shows %s = %q; the API and the billing record say %q", c.app, c.month, k, got[k], v)
			}
		}
		charges := shown(chargeAttr, dom)
		if len(charges) != len(c.rec.Charges) {
			t.Errorf("app %d %s: the page shows %d charges; the record has %d", c.app, c.month, len(charges), len(c.rec.Charges))
		}
		for _, ch := range c.rec.Charges {
			if charges[ch.Item] != ch.Amount {
				t.Errorf("app %d %s: the page shows %s = %q; the record says %q", c.app, c.month, ch.Item, charges[ch.Item], ch.Amount)
			}
		}
		quotas := shown(quotaAttr, dom)
		for _, q := range am.Quotas {
			if quotas[q.Name] != fmt.Sprint(q.Used) {
				t.Errorf("app %d %s: the page shows quota %s = %q; the API says %d", c.app, c.month, q.Name, quotas[q.Name], q.Used)
			}
		}
		if n := strings.Count(string(dom), "<svg"); n != 6 {
			t.Errorf("app %d %s: %d charts; want 6", c.app, c.month, n)
		}
	}

	// The app list as the staff sees it.
	dom := runChromium(ctx, t, bin, "--dump-dom", pageURL(staffToken, "/?month=2026-10"))
	for app, rec := range ce.oct {
		row := regexp.MustCompile(fmt.Sprintf(`(?s)<tr data-app="%d">.*?data-figure="total">([^<]*)<`, app)).FindSubmatch(dom)
		if row == nil || string(row[1]) != rec.Total+" "+rec.Currency {
			t.Errorf("app list: app %d: got %q; want total %s %s", app, row, rec.Total, rec.Currency)
		}
	}
	// Another app's page with an owner's token: no figures.
	dom = runChromium(ctx, t, bin, "--dump-dom", pageURL(devToken, fmt.Sprintf("/apps/%d?month=2026-10", appPremium)))
	if len(shown(figureAttr, dom)) != 0 || !strings.Contains(string(dom), "may not read") {
		t.Errorf("another app's page shows figures: %.300s", dom)
	}

	dir := os.Getenv("IMMETER_RUN_DIR")
	if dir == "" {
		dir = filepath.Join(testenv.Root(t), ".run")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The two window sizes, and a tall desktop window that shows the charts
	// and the records history too.
	for _, size := range []struct{ name, wh string }{{"phone", "390,844"}, {"desktop", "1280,900"}, {"desktop-tall", "1280,2200"}} {
		for _, p := range []struct{ name, path string }{
			{"app", fmt.Sprintf("/apps/%d?month=2026-10", appPremium)},
			{"apps", "/?month=2026-10"},
		} {
			file, _ := filepath.Abs(filepath.Join(dir, p.name+"-"+size.name+".png"))
			_ = os.Remove(file)
			runChromium(ctx, t, bin, "--screenshot="+file, "--window-size="+size.wh, pageURL(staffToken, p.path))
			if st, err := os.Stat(file); err != nil || st.Size() < 5000 {
				t.Errorf("screenshot %s: %v", file, err)
			}
		}
	}
	t.Logf("screenshots in %s", dir)
}

package telemetry_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/telemetry"
)

// root is the repository, where deploy/ and docker-compose.yml are.
const root = ".."

// metricNames returns the names of every metric a command can serve: the
// collectors of the aggregator, the rollup, the gateway and its producer,
// and those of telemetry.NewRegistry.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	brokers := []string{"127.0.0.1:1"} // never contacted
	acfg := aggregate.DefaultConfig()
	acfg.Brokers = brokers
	agg, err := aggregate.New(acfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := rollup.DefaultConfig()
	rcfg.Brokers = brokers
	roll, err := rollup.New(rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ingest.NewProducer(ingest.ProducerConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(t.Context())
	gcfg := ingest.DefaultGatewayConfig()
	gcfg.Secrets = map[uint32][]byte{1: []byte("s")}
	gw, err := ingest.NewGateway(gcfg, p)
	if err != nil {
		t.Fatal(err)
	}
	alcfg := rollup.DefaultAlertConfig()
	alcfg.Brokers = brokers
	al, err := rollup.NewAlerter(alcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	cs := []prometheus.Collector{agg.Collector(), roll.Collector(), gw.Collector(), al.Collector()}
	telemetry.NewRegistry(cs...) // panics on a name served twice
	ch := make(chan *prometheus.Desc, 1000)
	go func() {
		for _, c := range append(telemetry.Collectors(), cs...) {
			c.Describe(ch)
		}
		close(ch)
	}()
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	if len(names) < 30 {
		t.Fatalf("unexpected metric count; got %d; want >= 30: %v", len(names), names)
	}
	return names
}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	ident  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// exprMetrics returns the metric names in a PromQL expression: the
// identifiers of immeter's and the Go client's families, and up.
func exprMetrics(expr string) []string {
	var out []string
	for _, id := range ident.FindAllString(quoted.ReplaceAllString(expr, `""`), -1) {
		if id == "up" || strings.HasPrefix(id, "immeter_") || strings.HasPrefix(id, "go_") || strings.HasPrefix(id, "process_") {
			out = append(out, id)
		}
	}
	return out
}

// known says whether name is served, as is or as a histogram's series.
func known(names map[string]bool, name string) bool {
	if name == "up" || names[name] {
		return true
	}
	for _, sfx := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, sfx); ok && names[base] {
			return true
		}
	}
	return false
}

// TestDashboardMetricsExist checks that every expression of the Grafana
// dashboard asks for metrics immeter serves, from the provisioned data source.
func TestDashboardMetricsExist(t *testing.T) {
	names := metricNames(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy/grafana/dashboards/immeter.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "prometheus" {
			t.Errorf("panel %q: unexpected data source uid; got %q; want prometheus (deploy/grafana/provisioning/datasources)", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			ms := exprMetrics(tg.Expr)
			if len(ms) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, m := range ms {
				if !known(names, m) {
					t.Errorf("panel %q: unknown metric %s in %q", p.Title, m, tg.Expr)
				}
			}
		}
	}
	if exprs < 20 {
		t.Errorf("unexpected number of dashboard queries; got %d; want >= 20", exprs)
	}
}

// TestAlertRules checks the example alerting rules: each has a severity, a
// summary and a runbook link to a README section, and asks for metrics
// immeter serves. With promtool on the PATH (Debian package prometheus,
// make check-ops), the rules and the Prometheus configuration are checked
// by it too.
func TestAlertRules(t *testing.T) {
	names := metricNames(t)
	rulesPath := filepath.Join(root, "deploy/prometheus/alerts.yml")
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#")))
			h = regexp.MustCompile(`[^a-z0-9 -]`).ReplaceAllString(h, "")
			anchors[strings.ReplaceAll(h, " ", "-")] = true
		}
	}
	seen := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("group %s: rule without a name or named twice: %q", g.Name, r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: unexpected severity; got %q; want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook"], "README.md#")
			anchor, _, _ = strings.Cut(anchor, " ")
			if !anchors[anchor] {
				t.Errorf("%s: runbook %q: want README.md#<a heading of README.md>", r.Alert, r.Annotations["runbook"])
			}
			ms := exprMetrics(r.Expr)
			if len(ms) == 0 {
				t.Errorf("%s: no metric in %q", r.Alert, r.Expr)
			}
			for _, m := range ms {
				if !known(names, m) {
					t.Errorf("%s: unknown metric %s in %q", r.Alert, m, r.Expr)
				}
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("unexpected number of rules; got %d; want >= 10", len(seen))
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (apt-get install prometheus): rules checked by this test only")
		return
	}
	for _, args := range [][]string{
		{"check", "rules", rulesPath},
		{"check", "config", filepath.Join(root, "deploy/prometheus/prometheus.yml")},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestComposeStack checks docker-compose.yml without Docker: images pinned,
// the files it mounts exist, and Prometheus scrapes services that exist on
// the metrics port.
func TestComposeStack(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, want := range []string{"prometheus", "grafana", "aggregate", "rollup", "ingest"} {
		if _, ok := compose.Services[want]; !ok {
			t.Errorf("docker-compose.yml: no service %s", want)
		}
	}
	for name, s := range compose.Services {
		if _, tag, ok := strings.Cut(s.Image, ":"); !ok || tag == "" || tag == "latest" {
			t.Errorf("service %s: image %q: want a pinned version", name, s.Image)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, "./") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("service %s: mounts %s: %v", name, src, err)
			}
		}
	}
	pb, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(pb, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	port := strings.TrimPrefix(telemetry.DefaultAddr, ":")
	targets := 0
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				targets++
				host, p, _ := strings.Cut(target, ":")
				if _, ok := compose.Services[host]; !ok || p != port {
					t.Errorf("prometheus.yml: target %s: want a compose service on port %s", target, port)
				}
			}
		}
	}
	if targets != 3 {
		t.Errorf("unexpected scrape targets; got %d; want 3 (aggregate, rollup, ingest)", targets)
	}
}

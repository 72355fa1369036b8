package console

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(q rollup.Quota) float64 {
		if q.Limit <= 0 {
			return 0
		}
		return math.Min(100, math.Max(0, 100*float64(q.Used)/float64(q.Limit)))
	},
}).Parse(pageHTML))

// pageData is what page.html shows: the apps (App == nil) or one app's month.
type pageData struct {
	Title           string
	Refresh         int // seconds
	Month, Timezone string
	Prev, Next      string
	Staff           bool
	Apps            *AppsResponse
	App             *rollup.AppMonth
	Charts          []chart
}

type chart struct {
	Title  string
	Legend []series
	SVG    template.HTML
}

type series struct {
	Name, Color string
	Values      []float64
}

func (s *Server) render(w http.ResponseWriter, d *pageData) {
	d.Refresh = int(max(1, s.cfg.Refresh.Seconds()))
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		s.cfg.Logger.Error("console: page", "err", err)
		http.Error(w, "page error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

func (s *Server) pageApps(w http.ResponseWriter, r *http.Request, p principal) {
	m, err := s.month(r.URL.Query().Get("month"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	apps, err := s.apps(r.Context(), m, p)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	s.render(w, &pageData{Title: "Apps", Month: m.String(), Timezone: apps.Timezone,
		Prev: m.Prev().String(), Next: m.Next().String(), Staff: p.app == 0, Apps: apps})
}

func (s *Server) pageApp(w http.ResponseWriter, r *http.Request, p principal) {
	am := s.appMonth(w, r, p, r.URL.Query().Get("month"))
	if am == nil {
		return
	}
	m, _ := schemas.ParseMonth(am.Record.Month)
	s.render(w, &pageData{Title: fmt.Sprintf("App %d", am.Record.App), Month: m.String(), Timezone: am.Record.Timezone,
		Prev: m.Prev().String(), Next: m.Next().String(), Staff: p.app == 0, App: am, Charts: charts(am.Days)})
}

// charts draws the daily series.
func charts(days []rollup.DayUsage) []chart {
	col := func(f func(d rollup.DayUsage) float64) []float64 {
		out := make([]float64, len(days))
		for i, d := range days {
			out[i] = f(d)
		}
		return out
	}
	mk := func(title string, ss ...series) chart {
		return chart{Title: title, Legend: ss, SVG: barChart(title, days, ss)}
	}
	return []chart{
		mk("Active users", series{"active users", "#2f6fb5", col(func(d rollup.DayUsage) float64 { return float64(d.ActiveUsers) })}),
		mk("Logins", series{"logins", "#5b8fd0", col(func(d rollup.DayUsage) float64 { return float64(d.Logins) })}),
		mk("Messages by channel",
			series{"c2c", "#2f6fb5", col(func(d rollup.DayUsage) float64 { return float64(d.Messages.C2C) })},
			series{"group", "#e08a2c", col(func(d rollup.DayUsage) float64 { return float64(d.Messages.Group) })},
			series{"community", "#3c9a5f", col(func(d rollup.DayUsage) float64 { return float64(d.Messages.Community) })},
			series{"live", "#b04a7a", col(func(d rollup.DayUsage) float64 { return float64(d.Messages.Live) })}),
		mk("Groups created (up) and dissolved (down)",
			series{"created", "#3c9a5f", col(func(d rollup.DayUsage) float64 { return float64(d.GroupsCreated) })},
			series{"dissolved", "#c0392b", col(func(d rollup.DayUsage) float64 { return -float64(d.GroupsDissolved) })}),
		mk("Net groups", series{"net", "#7a5bb0", col(func(d rollup.DayUsage) float64 { return float64(d.GroupsNet) })}),
		mk("Call minutes",
			series{"audio", "#2f6fb5", col(func(d rollup.DayUsage) float64 { return float64(d.CallMinutes.Audio) })},
			series{"video", "#e08a2c", col(func(d rollup.DayUsage) float64 { return float64(d.CallMinutes.Video) })}),
	}
}

// barChart draws one bar per day, the series stacked: positive values up
// from zero, negative ones down.
func barChart(title string, days []rollup.DayUsage, ss []series) template.HTML {
	const w, h, left, top, bottom = 640.0, 200.0, 56.0, 12.0, 26.0
	n := len(days)
	hi, lo := 0.0, 0.0
	for i := range n {
		up, down := 0.0, 0.0
		for _, s := range ss {
			if v := s.Values[i]; v > 0 {
				up += v
			} else {
				down += v
			}
		}
		hi, lo = math.Max(hi, up), math.Min(lo, down)
	}
	if hi == 0 && lo == 0 {
		hi = 1
	}
	plotH := h - top - bottom
	y := func(v float64) float64 { return top + plotH*(hi-v)/(hi-lo) }
	bw := (w - left) / float64(max(n, 1))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %g %g" role="img" aria-label="%s">`, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" class="axis"/>`, left, y(0), w, y(0))
	fmt.Fprintf(&b, `<text x="%g" y="%.1f" class="tick" text-anchor="end">%s</text>`, left-4, y(hi)+14, num(hi))
	if lo < 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" class="tick" text-anchor="end">%s</text>`, left-4, y(lo), num(lo))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%.1f" class="tick" text-anchor="end">0</text>`, left-4, y(0)+6)
	for i, d := range days {
		x := left + float64(i)*bw
		up, down := 0.0, 0.0
		for _, s := range ss {
			v := s.Values[i]
			if v == 0 {
				continue
			}
			var y0, y1 float64
			if v > 0 {
				y0, y1 = y(up+v), y(up)
				up += v
			} else {
				y0, y1 = y(down), y(down+v)
				down += v
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`,
				x+bw*0.1, y0, bw*0.8, math.Max(y1-y0, 0.5), s.Color, d.Day, s.Name, num(v))
		}
		dom := d.Day[8:]
		if i == 0 || dom == "10" || dom == "20" || i == n-1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" class="tick" text-anchor="middle">%s</text>`, x+bw/2, h-6, strings.TrimPrefix(dom, "0"))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

package rollup

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/immeter/immeter/schemas"
)

// The read model of the usage console (rollup/console): one app's month as
// the billing record shows it so far, with its daily series, quota use and
// stored revisions; and the apps of a month. Every read of one app's month
// reads only that app's rows of that month.

// DayUsage is one day of an app's usage in the billing time zone.
type DayUsage struct {
	Day             string               `json:"day"` // YYYY-MM-DD
	ActiveUsers     uint64               `json:"active_users"`
	Logins          uint64               `json:"logins"`
	Messages        schemas.Messages     `json:"messages"`
	GroupsCreated   uint64               `json:"groups_created"`
	GroupsDissolved uint64               `json:"groups_dissolved"`
	GroupsNet       int64                `json:"groups_net"`
	CallSeconds     schemas.MediaAmounts `json:"call_seconds"`
	// CallMinutes is the day's seconds rounded up; the bill rounds the
	// month's total, so the days may add up to a little more.
	CallMinutes schemas.MediaAmounts `json:"call_minutes"`
}

// Quota is one figure of the month against the allowance of the edition in
// force at the end of the month.
type Quota struct {
	Name  string `json:"name"` // mau, community_messages, daily_net_groups
	Used  int64  `json:"used"`
	Limit int64  `json:"limit"` // 0: unlimited
	// Beyond says what happens above Limit: "billed" (overage charges),
	// "hard cap" (not billed, reported in the notes) or "reported" (a limit
	// of the IM service).
	Beyond string `json:"beyond"`
}

// Revision is one stored billing record revision.
type Revision struct {
	schemas.BillingRecord
	Published bool `json:"published"` // Kafka acknowledged it
}

// AppMonth is one app's month in the console.
type AppMonth struct {
	// Record holds the figures: the newest stored revision when it is final
	// or a correction, or equals the figures now; else the figures computed
	// now, exactly as the next revision would show them (Status provisional,
	// Revision 0).
	Record    schemas.BillingRecord `json:"record"`
	Final     bool                  `json:"final"` // a final record was published; Record is the billed one
	Days      []DayUsage            `json:"days"`  // every day of the month
	Quotas    []Quota               `json:"quotas"`
	Revisions []Revision            `json:"revisions"` // oldest first
}

// ReadAppMonth reads app's month m. now stamps figures not yet stored.
func ReadAppMonth(ctx context.Context, conn driver.Conn, app uint32, m schemas.Month, loc *time.Location, prices *PriceBook, now time.Time) (*AppMonth, error) {
	days := map[schemas.Day]*DayUsage{}
	usage, err := readMonth(ctx, conn, m, loc, app, days)
	if err != nil {
		return nil, err
	}
	u := usage[app]
	if u == nil {
		u = &MonthUsage{App: app, Month: m, DayEditions: editionDays(nil, m, loc)}
	}
	live, err := priceRecord(u, prices, loc)
	if err != nil {
		return nil, fmt.Errorf("app %d: %w", app, err)
	}
	out := &AppMonth{Record: live}
	out.Record.Status = schemas.Provisional
	out.Record.GeneratedAt = now.UTC().Truncate(time.Second)

	rows, err := conn.Query(ctx, sqlAppDayUsers, app, m.FirstDay().String(), m.LastDay().String())
	if err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}
	for rows.Next() {
		var day time.Time
		var n uint64
		if err := rows.Scan(&day, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read user_days: %w", err)
		}
		d := schemas.DayFromDate(day.Year(), day.Month(), day.Day())
		if days[d] == nil {
			days[d] = &DayUsage{Day: d.String()}
		}
		days[d].ActiveUsers = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}
	for d := m.FirstDay(); d <= m.LastDay(); d++ {
		if days[d] != nil {
			out.Days = append(out.Days, *days[d])
		} else {
			out.Days = append(out.Days, DayUsage{Day: d.String()})
		}
	}

	if out.Quotas, err = prices.quotaView(u); err != nil {
		return nil, err
	}

	rows, err = conn.Query(ctx, sqlAppRecords, app, m.String(), app, m.String())
	if err != nil {
		return nil, fmt.Errorf("read billing_records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rev uint32
		var body string
		var published uint8
		if err := rows.Scan(&rev, &body, &published); err != nil {
			return nil, fmt.Errorf("read billing_records: %w", err)
		}
		var r Revision
		if err := json.Unmarshal([]byte(body), &r.BillingRecord); err != nil {
			return nil, fmt.Errorf("read billing_records: app %d revision %d: %w", app, rev, err)
		}
		r.Published = published != 0
		out.Revisions = append(out.Revisions, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read billing_records: %w", err)
	}
	if n := len(out.Revisions); n > 0 {
		last := out.Revisions[n-1].BillingRecord
		switch {
		case last.Status != schemas.Provisional:
			out.Record, out.Final = last, true
		case fingerprint(last) == fingerprint(live):
			out.Record = last
		}
	}
	return out, nil
}

// quotaView returns the month's use of the edition's limits (PriceBook.Quotas,
// which the alerts and `immeter usage` show too) as the console shows them.
func (pb *PriceBook) quotaView(u *MonthUsage) ([]Quota, error) {
	qs, err := pb.Quotas(u)
	if err != nil {
		return nil, err
	}
	out := make([]Quota, 0, len(qs))
	for _, q := range qs {
		v := Quota{Used: q.Value, Limit: q.Limit}
		switch q.Kind {
		case schemas.AlertMAUQuota:
			ep, err := pb.edition(q.Edition)
			if err != nil {
				return nil, err
			}
			v.Name, v.Beyond = "mau", "billed"
			if !ep.hasOverage {
				v.Beyond = "hard cap"
			}
		case schemas.AlertCommunityAllowance:
			v.Name, v.Beyond = "community_messages", "billed"
		case schemas.AlertDailyNetGroups:
			v.Name, v.Beyond = "daily_net_groups", "reported"
		default:
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// AppSummary is an app's newest stored record of a month, in short;
// Revision 0 and the other fields empty when the app has usage in the month
// but no stored record yet.
type AppSummary struct {
	App         uint32    `json:"app"`
	Revision    int       `json:"revision"`
	Status      string    `json:"status"`
	Edition     string    `json:"edition"`
	MAU         uint64    `json:"mau"`
	Total       string    `json:"total"`
	Currency    string    `json:"currency"`
	GeneratedAt time.Time `json:"generated_at"`
}

// ReadApps returns, by app, the newest stored record of month m of every app
// that has one or has usage in the month.
func ReadApps(ctx context.Context, conn driver.Conn, m schemas.Month) ([]AppSummary, error) {
	rows, err := conn.Query(ctx, sqlMonthUsageApps, m.FirstDay().String(), m.LastDay().String())
	if err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	used := map[uint32]bool{}
	for rows.Next() {
		var app uint32
		if err := rows.Scan(&app); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read daily_usage: %w", err)
		}
		used[app] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	out, err := readSummaries(ctx, conn, m)
	if err != nil {
		return nil, err
	}
	for _, s := range out {
		delete(used, s.App)
	}
	for app := range used {
		out = append(out, AppSummary{App: app})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out, nil
}

func readSummaries(ctx context.Context, conn driver.Conn, m schemas.Month) ([]AppSummary, error) {
	rows, err := conn.Query(ctx, sqlMonthApps, m.String())
	if err != nil {
		return nil, fmt.Errorf("read billing_records: %w", err)
	}
	defer rows.Close()
	var out []AppSummary
	for rows.Next() {
		var s AppSummary
		var rev uint32
		var total decimal.Decimal
		if err := rows.Scan(&s.App, &rev, &s.Status, &s.Edition, &s.MAU, &total, &s.Currency, &s.GeneratedAt); err != nil {
			return nil, fmt.Errorf("read billing_records: %w", err)
		}
		s.Revision, s.Total = int(rev), total.StringFixed(2)
		s.GeneratedAt = s.GeneratedAt.UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

package rollup

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/immeter/immeter/schemas"
)

// testRollup is a Rollup for pricing only: it never connects.
func testRollup(t *testing.T, loc *time.Location) *Rollup {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Brokers, cfg.Location = []string{"127.0.0.1:1"}, loc
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestEditionDaysDST prices a month with an upgrade to Standard around a
// midnight that a change of offset skips or repeats. The day of the change
// is the day DayOf gives it, as for usage.
func TestEditionDaysDST(t *testing.T) {
	for _, c := range []struct {
		zone            string
		month           schemas.Month
		at              [5]int // y, m, d, h, min of the change, local
		standard, total string // days at Standard, total
	}{
		// Havana skips 2026-03-08 00:00: a change at 23:30 on the 7th is
		// Standard from the 7th, 25 days: 399 × 25 / 31 = 321.774…
		{"America/Havana", schemas.Month{Year: 2026, Month: time.March}, [5]int{2026, 3, 7, 23, 30}, "25", "321.77"},
		// Havana skipped 2012-04-01 00:00: a change at 23:30 on March 31 is
		// in March (1 day: 12.870…), not dropped.
		{"America/Havana", schemas.Month{Year: 2012, Month: time.March}, [5]int{2012, 3, 31, 23, 30}, "1", "12.87"},
		// Azores skips 2026-03-29 00:00: 28th to 31st, 399 × 4 / 31 = 51.483…
		{"Atlantic/Azores", schemas.Month{Year: 2026, Month: time.March}, [5]int{2026, 3, 28, 23, 30}, "4", "51.48"},
		// Santiago skips 2026-09-06 00:00: 5th to 30th, 399 × 26 / 30 = 345.80.
		{"America/Santiago", schemas.Month{Year: 2026, Month: time.September}, [5]int{2026, 9, 5, 23, 30}, "26", "345.80"},
		// Amman repeated 2021-10-29 00:00–00:59: a change in the first 00:30
		// is on the 29th (3 days, 38.612…), not on the 28th.
		{"Asia/Amman", schemas.Month{Year: 2021, Month: time.October}, [5]int{2021, 10, 29, 0, 30}, "3", "38.61"},
	} {
		loc, err := schemas.ParseTimezone(c.zone)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(c.at[0], time.Month(c.at[1]), c.at[2], c.at[3], c.at[4], 0, 0, loc)
		if c.zone == "Asia/Amman" {
			at = time.Date(2021, 10, 28, 21, 30, 0, 0, time.UTC) // the first of the two 00:30
		}
		if !at.Before(c.month.End(loc)) || at.Before(c.month.Start(loc)) {
			t.Errorf("%s: the change at %v falls outside %s (%v to %v)", c.zone, at, c.month, c.month.Start(loc), c.month.End(loc))
			continue
		}
		u := &MonthUsage{App: 1, Month: c.month,
			DayEditions: editionDays([]planChange{{at: at, edition: EditionStandard}}, c.month, loc)}
		rec, err := testRollup(t, loc).Record(u)
		if err != nil {
			t.Fatal(err)
		}
		var days string
		for _, ch := range rec.Charges {
			if ch.Item == ItemPackagePrefix+string(EditionStandard) {
				days = ch.Quantity
			}
		}
		if days != c.standard || rec.Total != c.total {
			t.Errorf("%s %s, change at %v: got %s days at Standard, total %s; want %s, %s",
				c.zone, c.month, at, days, rec.Total, c.standard, c.total)
		}
	}
}

// TestRecordSchema checks records against the published contract with a
// JSON Schema validator, for a time zone given as an offset and as an IANA
// name.
func TestRecordSchema(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemas.BillingRecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("billing-record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("billing-record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(b []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return sch.Validate(v)
	}
	m := schemas.Month{Year: 2026, Month: time.October}
	for _, tz := range []string{"+08:00", "Asia/Shanghai", "UTC", "-05:30", "America/Argentina/Buenos_Aires", "Etc/GMT-14"} {
		loc, err := schemas.ParseTimezone(tz)
		if err != nil {
			t.Fatal(err)
		}
		u := &MonthUsage{App: 1400000002, Month: m,
			DayEditions: editionDays([]planChange{{at: time.Date(2026, 10, 12, 9, 0, 0, 0, loc), edition: EditionStandard}}, m, loc),
			Usage:       schemas.Usage{MAU: 10001, MAUEstimate: 10034, Logins: 52210, CallSeconds: schemas.MediaAmounts{Audio: 61}, CallMinutes: schemas.MediaAmounts{Audio: 2}},
		}
		rec, err := testRollup(t, loc).Record(u)
		if err != nil {
			t.Fatal(err)
		}
		rec.Status, rec.Revision, rec.Supersedes, rec.GeneratedAt = schemas.Correction, 3, 2, time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
		b, _ := json.Marshal(rec)
		if err := validate(b); err != nil {
			t.Errorf("BILLING_TZ=%s: record %s breaks the schema: %v", tz, b, err)
		}
		if want := map[string]string{"UTC": "+00:00"}[tz]; rec.Timezone != tz && rec.Timezone != want {
			t.Errorf("BILLING_TZ=%s: record names the zone %q", tz, rec.Timezone)
		}
		// The validator is live: a bad zone is refused.
		bad := strings.Replace(string(b), `"timezone":"`+rec.Timezone+`"`, `"timezone":"+8 hours"`, 1)
		if bad == string(b) || validate([]byte(bad)) == nil {
			t.Errorf("BILLING_TZ=%s: a record with timezone \"+8 hours\" passes the schema", tz)
		}
	}
}

// TestDecideStatus is the table of which record, if any, a pass publishes
// for an app's month.
func TestDecideStatus(t *testing.T) {
	prev := func(status, fp string) *revisionInfo {
		return &revisionInfo{revision: 4, status: status, fingerprint: fp}
	}
	const same, changed = "fp-a", "fp-b"
	for _, c := range []struct {
		name    string
		prev    *revisionInfo
		settled bool
		mode    Mode
		want    string
	}{
		{"open month, first record", nil, false, Auto, schemas.Provisional},
		{"open month, figures changed", prev(schemas.Provisional, changed), false, Auto, schemas.Provisional},
		{"open month, nothing changed", prev(schemas.Provisional, same), false, Auto, ""},
		{"settled, no record yet", nil, true, Auto, schemas.Final},
		{"settled, last provisional unchanged: the final anyway", prev(schemas.Provisional, same), true, Auto, schemas.Final},
		{"settled, last provisional changed", prev(schemas.Provisional, changed), true, Auto, schemas.Final},
		{"final, nothing changed", prev(schemas.Final, same), true, Auto, ""},
		{"final, figures changed: correction", prev(schemas.Final, changed), true, Auto, schemas.Correction},
		{"correction, nothing changed", prev(schemas.Correction, same), true, Auto, ""},
		{"correction, changed again", prev(schemas.Correction, changed), true, Auto, schemas.Correction},
		{"forced, not settled, no record", nil, false, ForceFinal, schemas.Final},
		{"forced, not settled, provisional unchanged", prev(schemas.Provisional, same), false, ForceFinal, schemas.Final},
		{"forced early, provisional changed", prev(schemas.Provisional, changed), false, ForceFinalOpen, schemas.Final},
		{"forced, final unchanged", prev(schemas.Final, same), true, ForceFinal, ""},
		{"forced, final changed", prev(schemas.Final, changed), false, ForceFinal, schemas.Correction},
		{"final before settlement (forced earlier), late usage", prev(schemas.Final, changed), false, Auto, schemas.Correction},
	} {
		if got := decideStatus(c.prev, same, c.settled, c.mode); got != c.want {
			t.Errorf("%s: got %q; want %q", c.name, got, c.want)
		}
	}
}

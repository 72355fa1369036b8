package schemas

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestAlertMatchesSchema: the Go type writes exactly the schema's fields,
// and ids and periods match its patterns.
func TestAlertMatchesSchema(t *testing.T) {
	var schema struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Pattern string `json:"pattern"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(AlertSchema, &schema); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 10, 5, 1, 2, 3, 4, time.UTC)
	f := func(kind, period string) {
		t.Helper()
		a := Alert{ID: AlertID(1400000001, kind, period, "developer", 80), App: 1400000001, Kind: kind, Period: period,
			Level: 80, Value: 80, Limit: 100, Edition: "developer", At: at, GeneratedAt: at}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		_ = json.Unmarshal(b, &fields)
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		req := slices.Sorted(slices.Values(schema.Required))
		if !slices.Equal(keys, req) {
			t.Fatalf("unexpected fields; got %v; want %v", keys, req)
		}
		for _, field := range []string{"id", "period"} {
			re := regexp.MustCompile(schema.Properties[field].Pattern)
			if v := fields[field].(string); !re.MatchString(v) {
				t.Errorf("%s %q does not match the schema's pattern %s", field, v, re)
			}
		}
	}
	f(AlertMAUQuota, "2026-10")
	f(AlertCommunityAllowance, "2026-10")
	f(AlertDailyNetGroups, "2026-10-05")
	f(AlertLiveGroups, AlertLivePeriod)
}

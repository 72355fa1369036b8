package schemas

import (
	"strconv"
	"strings"
	"time"
)

// Alert kinds of contract v1.
const (
	AlertMAUQuota           = "mau_quota"           // distinct users of the month against the free MAU
	AlertCommunityAllowance = "community_allowance" // community messages of the month against the included ones
	AlertDailyNetGroups     = "daily_net_groups"    // groups created − dissolved in a day against the daily limit
	AlertLiveGroups         = "live_groups"         // live-streaming groups in existence against the limit
)

// AlertLivePeriod is the period of live_groups alerts: the groups that exist.
const AlertLivePeriod = "current"

// Alert says that an app's usage reached a level (a percentage) of an
// edition limit, as published on im.usage.alerts (schemas/alert.schema.json).
// Each ID is published with one content only.
type Alert struct {
	ID          string    `json:"id"` // <app>:<kind>:<period>:<edition>:<level>
	App         uint32    `json:"app"`
	Kind        string    `json:"kind"`
	Period      string    `json:"period"` // YYYY-MM, YYYY-MM-DD or current, in the billing time zone
	Level       int       `json:"level"`  // percent of Limit
	Value       int64     `json:"value"`  // exact, when the alert was issued
	Limit       int64     `json:"limit"`
	Edition     string    `json:"edition"` // in force when the crossing was detected
	At          time.Time `json:"at"`      // when the crossing was detected
	GeneratedAt time.Time `json:"generated_at"`
}

// AlertID returns the deterministic id of an alert.
func AlertID(app uint32, kind, period, edition string, level int) string {
	return strings.Join([]string{strconv.FormatUint(uint64(app), 10), kind, period, edition, strconv.Itoa(level)}, ":")
}

package schemas

import "time"

// Record statuses of contract v1.
const (
	Provisional = "provisional"
	Final       = "final"
	Correction  = "correction"
)

// BillingRecord is one app's usage and charges for one calendar month, as
// published on topic im.billing.monthly (schemas/billing-record.schema.json).
// Billing dedupes on (App, Month, Revision): a revision never changes.
type BillingRecord struct {
	App         uint32    `json:"app"`
	Month       string    `json:"month"`    // YYYY-MM in the billing time zone
	Timezone    string    `json:"timezone"` // e.g. +08:00
	Status      string    `json:"status"`   // provisional, final, correction
	Revision    int       `json:"revision"` // 1, 2, … per app and month
	Supersedes  int       `json:"supersedes,omitempty"`
	Edition     string    `json:"edition"` // in force at the end of the month
	EditionDays []Span    `json:"edition_days"`
	Usage       Usage     `json:"usage"`
	Charges     []Charge  `json:"charges"`
	Total       string    `json:"total"` // decimal string
	Currency    string    `json:"currency"`
	Notes       []string  `json:"notes,omitempty"`
	GeneratedAt time.Time `json:"generated_at"`
}

// Span is a run of calendar days at one edition.
type Span struct {
	Edition string `json:"edition"`
	From    string `json:"from"` // YYYY-MM-DD, first day
	To      string `json:"to"`   // YYYY-MM-DD, last day
	Days    int    `json:"days"`
}

// Usage is the metered usage of one app in one month.
type Usage struct {
	MAU               uint64       `json:"mau"`          // exact distinct users who logged in
	MAUEstimate       uint64       `json:"mau_estimate"` // from the HyperLogLog sketches
	Logins            uint64       `json:"logins"`
	Messages          Messages     `json:"messages"`
	GroupsCreated     uint64       `json:"groups_created"`
	GroupsDissolved   uint64       `json:"groups_dissolved"`
	MaxDailyNetGroups int64        `json:"max_daily_net_groups"`
	CallSeconds       MediaAmounts `json:"call_seconds"`
	CallMinutes       MediaAmounts `json:"call_minutes"`
}

// Messages counts messages by channel.
type Messages struct {
	C2C       uint64 `json:"c2c"`
	Group     uint64 `json:"group"`
	Community uint64 `json:"community"`
	Live      uint64 `json:"live"`
}

// MediaAmounts holds one figure per call media.
type MediaAmounts struct {
	Audio uint64 `json:"audio"`
	Video uint64 `json:"video"`
}

// Charge is one line of a bill. Money is a decimal string, never a float.
type Charge struct {
	Item      string `json:"item"`
	Quantity  string `json:"quantity"`
	Unit      string `json:"unit"`
	UnitPrice string `json:"unit_price"`
	Amount    string `json:"amount"`
}

package rollup

import (
	"fmt"
	"strconv"

	"github.com/immeter/immeter/schemas"
)

// QuotaUse is an app's usage of one edition limit in a month.
type QuotaUse struct {
	Kind    string // an alert kind: schemas.AlertMAUQuota, …
	Edition Edition
	Value   int64
	Limit   int64 // Unlimited (0) when there is no limit
}

// Use prints the use as "57/100 (57%)", or "57 (unlimited)".
func (q QuotaUse) Use() string {
	if q.Limit == Unlimited {
		return strconv.FormatInt(q.Value, 10) + " (unlimited)"
	}
	return fmt.Sprintf("%d/%d (%d%%)", q.Value, q.Limit, q.Value*100/q.Limit)
}

// Quotas returns the month's use of the limits that alert, against the
// edition in force at the end of the month (today's, for the open month):
// free MAU, community messages included (when the edition has an
// allowance), and the largest daily net group increase of the month.
func (pb *PriceBook) Quotas(u *MonthUsage) ([]QuotaUse, error) {
	e := EditionDeveloper
	if n := len(u.DayEditions); n > 0 {
		e = u.DayEditions[n-1]
	}
	ep, err := pb.edition(e)
	if err != nil {
		return nil, err
	}
	out := []QuotaUse{{Kind: schemas.AlertMAUQuota, Edition: e, Value: int64(u.Usage.MAU), Limit: ep.freeMAU}}
	if ep.hasCommunity && ep.communityIncluded > 0 {
		out = append(out, QuotaUse{Kind: schemas.AlertCommunityAllowance, Edition: e, Value: int64(u.Usage.Messages.Community), Limit: ep.communityIncluded})
	}
	out = append(out, QuotaUse{Kind: schemas.AlertDailyNetGroups, Edition: e, Value: u.Usage.MaxDailyNetGroups, Limit: ep.limits.DailyNetGroupIncrease})
	return out, nil
}

// Quotas returns the month's use of the limits that alert, priced with the
// rollup's price book (see PriceBook.Quotas).
func (r *Rollup) Quotas(u *MonthUsage) ([]QuotaUse, error) { return r.cfg.Prices.Quotas(u) }

package rollup

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"
)

// Edition is the name of an IM edition (package) as it appears in the price
// book and in plan-change events.
type Edition string

// The editions the price book must define.
const (
	EditionDeveloper Edition = "developer"
	EditionStandard  Edition = "standard"
	EditionPremium   Edition = "premium"
)

// editions lists the known editions in their canonical order.
var editions = []Edition{EditionDeveloper, EditionStandard, EditionPremium}

// Valid reports whether e is one of the known editions.
func (e Edition) Valid() bool {
	for _, k := range editions {
		if e == k {
			return true
		}
	}
	return false
}

// ErrUnknownEdition is returned (wrapped) for an edition the price book does
// not define.
var ErrUnknownEdition = errors.New("rollup: unknown edition")

// Unlimited is the value of a Limits field that has no limit.
const Unlimited int64 = 0

// Limits are the per-edition limits of the IM service that metering reports
// against. The IM service enforces them; metering only reports them. A field
// equal to Unlimited (0) has no limit; in the price book it is written null.
type Limits struct {
	RegisteredUsers       int64 // registered users of the app
	FriendsPerUser        int64 // friends per user
	GroupsPerUser         int64 // groups a user can join
	MembersPerGroup       int64 // members per non-live group
	NonLiveGroups         int64 // non-live groups; dissolved ones don't count
	LiveGroups            int64 // live-streaming groups
	DailyNetGroupIncrease int64 // groups created − dissolved per calendar day
	HistoryRetentionDays  int64 // days of free message history retention
}

// editionPrices is the validated price-book entry of one edition.
type editionPrices struct {
	monthlyFee decimal.Decimal
	freeMAU    int64
	// hasOverage is false when MAU beyond freeMAU is not billable (hard cap).
	hasOverage   bool
	overagePrice decimal.Decimal
	// hasCommunity is false when community messages are not billed.
	hasCommunity      bool
	communityIncluded int64
	communityBlock    int64
	communityPrice    decimal.Decimal // per started communityBlock
	limits            Limits
}

// PriceBook is a validated price list: edition fees, free quotas, overage
// and add-on prices, and per-edition limits. It is immutable and safe for
// concurrent use. Get one from DefaultPriceBook, LoadPriceBook or
// ParsePriceBook.
type PriceBook struct {
	currency       string
	editions       map[Edition]editionPrices
	callPerMinutes int64
	audioPrice     decimal.Decimal // per callPerMinutes minutes
	videoPrice     decimal.Decimal // per callPerMinutes minutes
	alertLevels    []int           // percentages of a limit that alert, ascending
}

// Currency returns the ISO 4217 code of every amount in the price book.
func (pb *PriceBook) Currency() string { return pb.currency }

// Limits returns the limits of edition e, or an error wrapping
// ErrUnknownEdition.
func (pb *PriceBook) Limits(e Edition) (Limits, error) {
	ep, err := pb.edition(e)
	if err != nil {
		return Limits{}, err
	}
	return ep.limits, nil
}

func (pb *PriceBook) edition(e Edition) (editionPrices, error) {
	ep, ok := pb.editions[e]
	if !ok {
		return editionPrices{}, fmt.Errorf("%w %q", ErrUnknownEdition, e)
	}
	return ep, nil
}

//go:embed plans.yaml
var defaultPlans []byte

var defaultPriceBook = sync.OnceValue(func() *PriceBook {
	pb, err := ParsePriceBook(defaultPlans)
	if err != nil {
		panic("rollup: embedded plans.yaml: " + err.Error())
	}
	return pb
})

// DefaultPriceBook returns the price book embedded from plans.yaml, the
// provider's public price list. The returned value is shared; it is
// immutable.
func DefaultPriceBook() *PriceBook { return defaultPriceBook() }

// LoadPriceBook reads and validates the YAML price book at path. See
// plans.yaml for the format. The error names the offending field, for
// example "editions.standard.mau_overage_price: must be >= 0".
func LoadPriceBook(path string) (*PriceBook, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rollup: read price book: %w", err)
	}
	pb, err := ParsePriceBook(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pb, nil
}

// ParsePriceBook parses and validates a YAML price book (see plans.yaml).
// Unknown keys are errors; money values are read as exact decimal text.
func ParsePriceBook(data []byte) (*PriceBook, error) {
	var raw rawPriceBook
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("rollup: parse price book: %w", err)
	}
	// A second document would be ignored by Decode: refuse it rather than
	// bill from half a file.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("rollup: parse price book: a second YAML document starts at line %d: the price book is one document", extra.Line)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("rollup: parse price book: after the first document: %w", err)
	}
	pb, err := raw.validate()
	if err != nil {
		return nil, fmt.Errorf("rollup: invalid price book: %w", err)
	}
	return pb, nil
}

// The raw* types mirror plans.yaml. Money fields are strings so that YAML
// numbers reach decimal.NewFromString as the text written in the file,
// never through float64; yaml.v3 stores any scalar's text in a string field.
type rawPriceBook struct {
	Currency   string                 `yaml:"currency"`
	Editions   map[string]*rawEdition `yaml:"editions"`
	CallPrices *rawCallPrices         `yaml:"call_prices"`
	// AlertLevels is nil when the key is omitted (the default levels).
	AlertLevels *[]int `yaml:"alert_levels"`
}

type rawEdition struct {
	MonthlyFee          *string           `yaml:"monthly_fee"`
	FreeMAU             *int64            `yaml:"free_mau"`
	MAUOveragePrice     *string           `yaml:"mau_overage_price"`
	CommunityIncluded   *int64            `yaml:"community_included"`
	CommunityBlock      *int64            `yaml:"community_block"`
	CommunityBlockPrice *string           `yaml:"community_block_price"`
	Limits              map[string]*int64 `yaml:"limits"` // null value = unlimited
}

type rawCallPrices struct {
	PerMinutes *int64  `yaml:"per_minutes"`
	Audio      *string `yaml:"audio"`
	Video      *string `yaml:"video"`
}

// limitKeys maps each required key under editions.<name>.limits to its field.
var limitKeys = []struct {
	key   string
	field func(*Limits) *int64
}{
	{"registered_users", func(l *Limits) *int64 { return &l.RegisteredUsers }},
	{"friends_per_user", func(l *Limits) *int64 { return &l.FriendsPerUser }},
	{"groups_per_user", func(l *Limits) *int64 { return &l.GroupsPerUser }},
	{"members_per_group", func(l *Limits) *int64 { return &l.MembersPerGroup }},
	{"non_live_groups", func(l *Limits) *int64 { return &l.NonLiveGroups }},
	{"live_groups", func(l *Limits) *int64 { return &l.LiveGroups }},
	{"daily_net_group_increase", func(l *Limits) *int64 { return &l.DailyNetGroupIncrease }},
	{"history_retention_days", func(l *Limits) *int64 { return &l.HistoryRetentionDays }},
}

// checker collects validation errors, each prefixed with its field path.
type checker struct{ errs []error }

func (c *checker) failf(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// money parses a required (required=true) or optional money field; ok is
// false when the field is absent or invalid.
func (c *checker) money(path string, s *string, required bool) (d decimal.Decimal, ok bool) {
	if s == nil {
		if required {
			c.failf(path, "required")
		}
		return decimal.Decimal{}, false
	}
	if !plainDecimal(*s) {
		c.failf(path, "must be a plain decimal number such as 0.015 (at most %d digits before the point and %d after, no exponent); got %.40q", maxMoneyWhole, maxMoneyFraction, *s)
		return decimal.Decimal{}, false
	}
	d, err := decimal.NewFromString(*s)
	if err != nil {
		c.failf(path, "not a decimal number: %q", *s)
		return decimal.Decimal{}, false
	}
	if d.IsNegative() {
		c.failf(path, "must be >= 0")
		return decimal.Decimal{}, false
	}
	return d, true
}

// count checks a required count field against least.
func (c *checker) count(path string, v *int64, least int64) int64 {
	if v == nil {
		c.failf(path, "required")
		return 0
	}
	if *v < least {
		c.failf(path, "must be >= %d", least)
	}
	return *v
}

func (r *rawPriceBook) validate() (*PriceBook, error) {
	var c checker
	pb := &PriceBook{currency: r.Currency, editions: make(map[Edition]editionPrices, len(editions))}

	if !isCurrencyCode(r.Currency) {
		c.failf("currency", "must be a 3-letter ISO 4217 code such as USD; got %q", r.Currency)
	}

	for _, name := range slices.Sorted(maps.Keys(r.Editions)) {
		if !Edition(name).Valid() {
			c.failf("editions."+name, "unknown edition; want one of %v", editions)
		}
	}
	for _, e := range editions {
		path := "editions." + string(e)
		re := r.Editions[string(e)]
		if re == nil {
			c.failf(path, "required")
			continue
		}
		pb.editions[e] = re.validate(&c, path)
	}

	if r.CallPrices == nil {
		c.failf("call_prices", "required")
	} else {
		pb.callPerMinutes = c.count("call_prices.per_minutes", r.CallPrices.PerMinutes, 1)
		pb.audioPrice, _ = c.money("call_prices.audio", r.CallPrices.Audio, true)
		pb.videoPrice, _ = c.money("call_prices.video", r.CallPrices.Video, true)
	}

	pb.alertLevels = c.levels("alert_levels", r.AlertLevels)

	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return pb, nil
}

// DefaultAlertLevels are the alert levels when the price book sets none:
// percent of each limit.
var DefaultAlertLevels = []int{80, 100}

// levels checks the alert levels: omitted means DefaultAlertLevels; else at
// least one, each in 1..1000, strictly ascending.
func (c *checker) levels(path string, v *[]int) []int {
	if v == nil {
		return DefaultAlertLevels
	}
	if len(*v) == 0 {
		c.failf(path, "at least one level (omit the key for the default %v)", DefaultAlertLevels)
		return nil
	}
	for i, l := range *v {
		switch {
		case l < 1 || l > 1000:
			c.failf(path, "%d: a level is a percentage of the limit in 1..1000", l)
		case i > 0 && l <= (*v)[i-1]:
			c.failf(path, "levels must be strictly ascending; got %v", *v)
		}
	}
	return slices.Clone(*v)
}

// AlertLevels returns the percentages of a limit at which an app is alerted,
// ascending.
func (pb *PriceBook) AlertLevels() []int { return slices.Clone(pb.alertLevels) }

func (re *rawEdition) validate(c *checker, path string) editionPrices {
	var ep editionPrices
	ep.monthlyFee, _ = c.money(path+".monthly_fee", re.MonthlyFee, true)
	ep.freeMAU = c.count(path+".free_mau", re.FreeMAU, 0)
	ep.overagePrice, ep.hasOverage = c.money(path+".mau_overage_price", re.MAUOveragePrice, false)

	// The three community fields come together or not at all.
	set := re.CommunityIncluded != nil || re.CommunityBlock != nil || re.CommunityBlockPrice != nil
	if set {
		ep.hasCommunity = true
		ep.communityIncluded = c.count(path+".community_included", re.CommunityIncluded, 0)
		ep.communityBlock = c.count(path+".community_block", re.CommunityBlock, 1)
		ep.communityPrice, _ = c.money(path+".community_block_price", re.CommunityBlockPrice, true)
	}

	lpath := path + ".limits"
	if re.Limits == nil {
		c.failf(lpath, "required")
		return ep
	}
	known := make(map[string]bool, len(limitKeys))
	for _, lk := range limitKeys {
		known[lk.key] = true
		kpath := lpath + "." + lk.key
		v, present := re.Limits[lk.key]
		switch {
		case !present:
			c.failf(kpath, "required (null for unlimited)")
		case v == nil:
			*lk.field(&ep.limits) = Unlimited
		case *v <= 0:
			c.failf(kpath, "must be > 0 (null for unlimited)")
		default:
			*lk.field(&ep.limits) = *v
		}
	}
	for _, key := range slices.Sorted(maps.Keys(re.Limits)) {
		if !known[key] {
			c.failf(lpath+"."+key, "unknown limit")
		}
	}
	return ep
}

// Bounds of the digits of a money value before and after the point: far
// beyond any price, and far from what a typo such as 1e400 means.
const (
	maxMoneyWhole    = 12
	maxMoneyFraction = 30
)

// plainDecimal says whether s is an optionally negative decimal written
// with digits and at most one point, within maxMoneyWhole and
// maxMoneyFraction digits.
// The sign is left to the caller's check (so "-1" reads "must be >= 0").
func plainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, hasPoint := strings.Cut(s, ".")
	digits := func(t string, most int) bool {
		for i := 0; i < len(t); i++ {
			if t[i] < '0' || t[i] > '9' {
				return false
			}
		}
		return len(t) >= 1 && len(t) <= most
	}
	return digits(whole, maxMoneyWhole) && (!hasPoint || digits(frac, maxMoneyFraction))
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

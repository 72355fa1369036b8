package rollup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// edit returns the embedded plans.yaml with old replaced by new, failing the
// test unless old occurs exactly once.
func edit(t *testing.T, old, new string) []byte {
	t.Helper()
	s := string(defaultPlans)
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("unexpected occurrences of %q in plans.yaml; got %d; want 1", old, n)
	}
	return []byte(strings.Replace(s, old, new, 1))
}

// cut returns the embedded plans.yaml without the text from the first
// occurrence of from up to (not including) the following occurrence of to.
func cut(t *testing.T, from, to string) []byte {
	t.Helper()
	s := string(defaultPlans)
	i := strings.Index(s, from)
	j := strings.Index(s[max(i, 0):], to)
	if i < 0 || j < 0 {
		t.Fatalf("unexpected plans.yaml layout; cannot cut from %q to %q", from, to)
	}
	return []byte(s[:i] + s[i+j:])
}

func TestDefaultPriceBook(t *testing.T) {
	pb := DefaultPriceBook()
	if pb.Currency() != "USD" {
		t.Errorf("unexpected currency; got %q; want %q", pb.Currency(), "USD")
	}
	if DefaultPriceBook() != pb {
		t.Errorf("unexpected new price book on second call; want the shared one")
	}
	f := func(e Edition, fee string, free int64, overage string, community string) {
		t.Helper()
		ep := pb.editions[e]
		if ep.monthlyFee.String() != fee {
			t.Errorf("%s: unexpected monthly fee; got %s; want %s", e, ep.monthlyFee, fee)
		}
		if ep.freeMAU != free {
			t.Errorf("%s: unexpected free MAU; got %d; want %d", e, ep.freeMAU, free)
		}
		got := "none"
		if ep.hasOverage {
			got = ep.overagePrice.String()
		}
		if got != overage {
			t.Errorf("%s: unexpected overage price; got %s; want %s", e, got, overage)
		}
		got = "none"
		if ep.hasCommunity {
			got = fmt.Sprintf("%s per started %d over %d", ep.communityPrice, ep.communityBlock, ep.communityIncluded)
		}
		if got != community {
			t.Errorf("%s: unexpected community pricing; got %s; want %s", e, got, community)
		}
	}
	f(EditionDeveloper, "0", 100, "none", "none")
	f(EditionStandard, "399", 10000, "0.015", "none")
	f(EditionPremium, "699", 10000, "0.015", "20 per started 10000000 over 100000000")
	if pb.callPerMinutes != 1000 || pb.audioPrice.String() != "0.99" || pb.videoPrice.String() != "3.99" {
		t.Errorf("unexpected call prices; got %s / %s per %d minutes; want 0.99 / 3.99 per 1000 minutes",
			pb.audioPrice, pb.videoPrice, pb.callPerMinutes)
	}
}

func TestLimits(t *testing.T) {
	pb := DefaultPriceBook()
	f := func(e Edition, want Limits) {
		t.Helper()
		got, err := pb.Limits(e)
		if err != nil {
			t.Fatalf("%s: unexpected error: %s", e, err)
		}
		if got != want {
			t.Errorf("%s: unexpected limits;\ngot  %+v\nwant %+v", e, got, want)
		}
	}
	f(EditionDeveloper, Limits{
		RegisteredUsers: 100, FriendsPerUser: 20, GroupsPerUser: 50, MembersPerGroup: 20,
		NonLiveGroups: 100, LiveGroups: 10, DailyNetGroupIncrease: 100, HistoryRetentionDays: 7,
	})
	f(EditionStandard, Limits{
		RegisteredUsers: Unlimited, FriendsPerUser: 3000, GroupsPerUser: 500, MembersPerGroup: 200,
		NonLiveGroups: Unlimited, LiveGroups: 50, DailyNetGroupIncrease: 10000, HistoryRetentionDays: 7,
	})
	f(EditionPremium, Limits{
		RegisteredUsers: Unlimited, FriendsPerUser: 3000, GroupsPerUser: 1000, MembersPerGroup: 2000,
		NonLiveGroups: Unlimited, LiveGroups: Unlimited, DailyNetGroupIncrease: 10000, HistoryRetentionDays: 30,
	})
	if _, err := pb.Limits("ultimate"); !errors.Is(err, ErrUnknownEdition) {
		t.Errorf("unexpected error for an unknown edition; got %v; want %v", err, ErrUnknownEdition)
	}
}

func TestParsePriceBookInvalid(t *testing.T) {
	f := func(name string, data []byte, wantInErr ...string) {
		t.Helper()
		pb, err := ParsePriceBook(data)
		if err == nil {
			t.Fatalf("%s: unexpected success; want an error naming %q", name, wantInErr)
		}
		if pb != nil {
			t.Errorf("%s: unexpected price book with an error", name)
		}
		for _, w := range wantInErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: unexpected error; got %q; want it to contain %q", name, err, w)
			}
		}
	}
	f("negative overage price",
		edit(t, "    monthly_fee: 399\n    free_mau: 10000\n    mau_overage_price: 0.015\n",
			"    monthly_fee: 399\n    free_mau: 10000\n    mau_overage_price: -0.015\n"),
		"editions.standard.mau_overage_price: must be >= 0")
	f("negative monthly fee",
		edit(t, "monthly_fee: 699", `monthly_fee: "-1"`),
		"editions.premium.monthly_fee: must be >= 0")
	f("negative call price",
		edit(t, "video: 3.99", "video: -3.99"),
		"call_prices.video: must be >= 0")
	f("price not a number",
		edit(t, "audio: 0.99", "audio: cheap"),
		`call_prices.audio: must be a plain decimal number such as 0.015`, `got "cheap"`)
	f("price with an exponent",
		edit(t, "monthly_fee: 699", "monthly_fee: 1e400"),
		"editions.premium.monthly_fee: must be a plain decimal number", `got "1e400"`)
	f("price with too many digits",
		edit(t, "audio: 0.99", "audio: 1234567890123.5"),
		"call_prices.audio: must be a plain decimal number")
	f("price with too many decimals",
		edit(t, "audio: 0.99", "audio: 0.0000000000000000000000000000001"),
		"call_prices.audio: must be a plain decimal number")
	f("second YAML document",
		append(edit(t, "currency: USD", "currency: USD"), "---\ncurrency: EUR\n"...),
		"a second YAML document starts at line")
	f("second document that is not YAML",
		append(edit(t, "currency: USD", "currency: USD"), "---\n{[\n"...),
		"after the first document")
	f("price not a scalar",
		edit(t, "audio: 0.99", "audio: [0.99]"),
		"line")
	f("missing monthly fee",
		edit(t, "    monthly_fee: 399\n", ""),
		"editions.standard.monthly_fee: required")
	f("missing free MAU",
		edit(t, "    free_mau: 100\n", ""),
		"editions.developer.free_mau: required")
	f("negative free MAU",
		edit(t, "free_mau: 100\n", "free_mau: -100\n"),
		"editions.developer.free_mau: must be >= 0")

	f("missing edition", cut(t, "  premium:\n", "# Real-time"),
		"editions.premium: required")
	f("unknown edition",
		edit(t, "  premium:\n", "  ultimate:\n"),
		"editions.ultimate: unknown edition", "editions.premium: required")
	f("unknown field",
		edit(t, "  standard:\n", "  standard:\n    monthly_fees: 1\n"),
		"monthly_fees")
	f("unknown top-level field",
		edit(t, "currency: USD\n", "currency: USD\ntax_rate: 0.1\n"),
		"tax_rate")
	f("unknown limit",
		edit(t, "      live_groups: 50\n", "      live_groups: 50\n      bots: 3\n"),
		"editions.standard.limits.bots: unknown limit")
	f("missing limit",
		edit(t, "      history_retention_days: 30\n", ""),
		"editions.premium.limits.history_retention_days: required")
	f("zero limit",
		edit(t, "live_groups: 10 ", "live_groups: 0 "),
		"editions.developer.limits.live_groups: must be > 0 (null for unlimited)")
	f("missing limits",
		cut(t, "    limits:\n      registered_users: 100\n", "\n  standard:"),
		"editions.developer.limits: required")
	f("partial community pricing",
		edit(t, "    community_block: 10000000\n", ""),
		"editions.premium.community_block: required")
	f("zero community block",
		edit(t, "community_block: 10000000", "community_block: 0"),
		"editions.premium.community_block: must be >= 1")
	f("bad currency",
		edit(t, "currency: USD", "currency: usd"),
		"currency: must be a 3-letter ISO 4217 code")
	f("zero per_minutes",
		edit(t, "per_minutes: 1000", "per_minutes: 0"),
		"call_prices.per_minutes: must be >= 1")
	f("missing call prices",
		edit(t, "call_prices:\n  per_minutes: 1000\n  audio: 0.99\n  video: 3.99\n", ""),
		"call_prices: required")
	f("empty document", nil, "parse price book")
	// Several problems are all reported.
	f("several problems",
		edit(t, "per_minutes: 1000\n  audio: 0.99", "per_minutes: 0\n  audio: -0.99"),
		"call_prices.per_minutes: must be >= 1", "call_prices.audio: must be >= 0")
}

func TestParsePriceBookValid(t *testing.T) {
	f := func(name string, data []byte, in PricingInput, wantTotal string) {
		t.Helper()
		pb, err := ParsePriceBook(data)
		if err != nil {
			t.Fatalf("%s: unexpected error: %s", name, err)
		}
		bill, err := pb.Price(in)
		if err != nil {
			t.Fatalf("%s: unexpected error: %s", name, err)
		}
		if bill.Total.String() != wantTotal {
			t.Errorf("%s: unexpected total; got %s; want %s", name, bill.Total, wantTotal)
		}
	}
	std := PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard), MAU: 10001}

	// A price change is configuration only: 400 + 1 × 0.015 → 0.02.
	f("changed fee", edit(t, "monthly_fee: 399", "monthly_fee: 400"), std, "400.02")
	// Quoted decimal strings work like plain numbers.
	f("quoted prices", edit(t, "monthly_fee: 399", `monthly_fee: "399.50"`), std, "399.52")
	// A plain number with more digits than a float64 holds is read exactly:
	// 399 + 0.0150000000000000000001 → 0.02.
	f("exact decimal",
		edit(t, "    free_mau: 10000\n    mau_overage_price: 0.015\n    limits:\n      registered_users: null\n      friends_per_user: 3000\n      groups_per_user: 500",
			"    free_mau: 10000\n    mau_overage_price: 0.0150000000000000000001\n    limits:\n      registered_users: null\n      friends_per_user: 3000\n      groups_per_user: 500"),
		std, "399.02")
	// Omitting mau_overage_price is the same as null: not billable.
	dev := PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper), MAU: 500}
	f("omitted overage price", edit(t, "    mau_overage_price: null\n", ""), dev, "0")

}

func TestLoadPriceBook(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(good, defaultPlans, 0o600); err != nil {
		t.Fatal(err)
	}
	pb, err := LoadPriceBook(good)
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	bill, err := pb.Price(PricingInput{Year: 2026, Month: time.October, DayEditions: whole(2026, time.October, EditionPremium), MAU: 12345, CommunityMessages: 123456789})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if bill.Total.StringFixed(2) != "794.18" {
		t.Errorf("unexpected total; got %s; want %s", bill.Total, "794.18")
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, edit(t, "video: 3.99", "video: -3.99"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadPriceBook(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "call_prices.video: must be >= 0") {
		t.Errorf("unexpected error; got %v; want one naming %s and call_prices.video", err, bad)
	}

	if _, err := LoadPriceBook(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unexpected error for a missing file; got %v; want %v", err, os.ErrNotExist)
	}
}

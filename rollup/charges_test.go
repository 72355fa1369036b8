package rollup

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// month returns the DayEditions of year-m: edition from on days 1..changeDay-1
// and edition to from changeDay to the end. changeDay 1 means the whole
// month at to.
func month(year int, m time.Month, from Edition, changeDay int, to Edition) []Edition {
	days := make([]Edition, DaysIn(year, m))
	for i := range days {
		if i+1 < changeDay {
			days[i] = from
		} else {
			days[i] = to
		}
	}
	return days
}

// whole returns the DayEditions of year-m spent entirely at e.
func whole(year int, m time.Month, e Edition) []Edition {
	return month(year, m, e, 1, e)
}

// line renders a charge for comparison with a literal expectation.
func line(c Charge) string {
	return fmt.Sprintf("%s %s %s @ %s = %s", c.Item, c.Quantity, c.Unit, c.UnitPrice, c.Amount.StringFixed(2))
}

// The expected lines and totals below are worked out by hand, not by the code
// under test; the comment on each case shows the arithmetic.
func TestPriceGolden(t *testing.T) {
	pb := DefaultPriceBook()
	f := func(name string, in PricingInput, wantLines []string, wantTotal string, wantNotes ...string) {
		t.Helper()
		bill, err := pb.Price(in)
		if err != nil {
			t.Fatalf("%s: unexpected error: %s", name, err)
		}
		var gotLines []string
		for _, c := range bill.Charges {
			gotLines = append(gotLines, line(c))
			if !c.Amount.Equal(c.Amount.Round(2)) {
				t.Errorf("%s: unexpected amount precision for %s; got %s; want a multiple of 0.01", name, c.Item, c.Amount)
			}
		}
		if !slices.Equal(gotLines, wantLines) {
			t.Errorf("%s: unexpected charges;\ngot  %q\nwant %q", name, gotLines, wantLines)
		}
		if want := decimal.RequireFromString(wantTotal); !bill.Total.Equal(want) {
			t.Errorf("%s: unexpected total; got %s; want %s", name, bill.Total, wantTotal)
		}
		if !slices.Equal(bill.Notes, wantNotes) {
			t.Errorf("%s: unexpected notes; got %q; want %q", name, bill.Notes, wantNotes)
		}
		if bill.Currency != "USD" {
			t.Errorf("%s: unexpected currency; got %q; want %q", name, bill.Currency, "USD")
		}
	}

	// 0 USD × 30/30 = 0.00; 100 MAU is within the free 100.
	f("developer at 100 MAU",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper), MAU: 100},
		[]string{"package:developer 30 day @ 0 = 0.00"},
		"0.00")

	// Hard cap: 101 MAU is not billable, only reported.
	f("developer at 101 MAU",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper), MAU: 101},
		[]string{"package:developer 30 day @ 0 = 0.00"},
		"0.00",
		"developer edition hard cap of 100 MAU exceeded: 101 MAU")

	// 399 × 30/30 = 399.00; 10,000 − 10,000 = 0 over.
	f("standard at 10,000 MAU",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard), MAU: 10000},
		[]string{
			"package:standard 30 day @ 13.3 = 399.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"399.00")

	// 1 × 0.015 = 0.015 → 0.02 (half-up); 399.00 + 0.02 = 399.02.
	f("standard at 10,001 MAU",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard), MAU: 10001},
		[]string{
			"package:standard 30 day @ 13.3 = 399.00",
			"mau_overage 1 MAU @ 0.015 = 0.02",
		},
		"399.02")

	// 3 × 0.015 = 0.045 → 0.05 half-up (banker's rounding would give 0.04).
	f("standard at 10,003 MAU",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard), MAU: 10003},
		[]string{
			"package:standard 30 day @ 13.3 = 399.00",
			"mau_overage 3 MAU @ 0.015 = 0.05",
		},
		"399.05")

	// October has 31 days: 699 / 31 = 22.548387096774193548… → 22.5483870967741935
	// (16 places); 699 × 31/31 = 699.00. 12,345 − 10,000 = 2,345 over;
	// 2,345 × 0.015 = 35.175 → 35.18; 699.00 + 35.18 = 734.18.
	f("premium at 12,345 MAU",
		PricingInput{Year: 2026, Month: time.October, DayEditions: whole(2026, time.October, EditionPremium), MAU: 12345},
		[]string{
			"package:premium 31 day @ 22.5483870967741935 = 699.00",
			"mau_overage 2345 MAU @ 0.015 = 35.18",
		},
		"734.18")

	// 123,456,789 − 100,000,000 = 23,456,789 over; / 10,000,000 = 2.35 → 3
	// started blocks; 3 × 20 = 60.00; 734.18 + 60.00 = 794.18.
	f("premium with MAU and community overage",
		PricingInput{Year: 2026, Month: time.October, DayEditions: whole(2026, time.October, EditionPremium), MAU: 12345, CommunityMessages: 123456789},
		[]string{
			"package:premium 31 day @ 22.5483870967741935 = 699.00",
			"mau_overage 2345 MAU @ 0.015 = 35.18",
			"community_messages 3 10000000 messages @ 20 = 60.00",
		},
		"794.18")

	// Exactly the 100,000,000 included: nothing to bill.
	f("premium at the community allowance",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionPremium), MAU: 10, CommunityMessages: 100000000},
		[]string{
			"package:premium 30 day @ 23.3 = 699.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"699.00")

	// One message over starts one block: 1 × 20 = 20.00; 699.00 + 20.00.
	f("premium one message over the community allowance",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionPremium), MAU: 10, CommunityMessages: 100000001},
		[]string{
			"package:premium 30 day @ 23.3 = 699.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
			"community_messages 1 10000000 messages @ 20 = 20.00",
		},
		"719.00")

	// Standard has no community pricing: messages are not billed.
	f("standard community messages not billed",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard), MAU: 10, CommunityMessages: 500000000},
		[]string{
			"package:standard 30 day @ 13.3 = 399.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"399.00")

	// 2026-11 has 30 days; upgrade effective on the 11th: developer days 1–10,
	// standard days 11–30. 0 × 10/30 = 0.00; 399 × 20/30 = 7980/30 = 266.00.
	f("developer to standard on the 11th",
		PricingInput{Year: 2026, Month: time.November, DayEditions: month(2026, time.November, EditionDeveloper, 11, EditionStandard), MAU: 5000},
		[]string{
			"package:developer 10 day @ 0 = 0.00",
			"package:standard 20 day @ 13.3 = 266.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"266.00")

	// The free quota is the end-of-month edition's: 150 MAU is within
	// standard's 10,000, so no developer hard-cap note.
	f("developer to standard quota at end of month",
		PricingInput{Year: 2026, Month: time.November, DayEditions: month(2026, time.November, EditionDeveloper, 11, EditionStandard), MAU: 150},
		[]string{
			"package:developer 10 day @ 0 = 0.00",
			"package:standard 20 day @ 13.3 = 266.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"266.00")

	// 2026-12 has 31 days; premium from the 17th: standard days 1–16,
	// premium days 17–31.
	// standard: 399 × 16 = 6384; 6384 / 31 = 205 rem 29 = 205.935… → 205.94;
	//   unit 399/31 = 12.870967741935483870… → 12.8709677419354839.
	// premium: 699 × 15 = 10485; 10485 / 31 = 338 rem 7 = 338.225… → 338.23;
	//   unit 699/31 = 22.548387096774193548… → 22.5483870967741935.
	// Total 205.94 + 338.23 = 544.17.
	f("standard to premium on the 17th of a 31-day month",
		PricingInput{Year: 2026, Month: time.December, DayEditions: month(2026, time.December, EditionStandard, 17, EditionPremium), MAU: 10000},
		[]string{
			"package:standard 16 day @ 12.8709677419354839 = 205.94",
			"package:premium 15 day @ 22.5483870967741935 = 338.23",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"544.17")

	// 2028-02 has 29 days: 399/29 = 13.758620689655172413… → 13.7586206896551724,
	// yet 399 × 29/29 = 399.00 exactly.
	f("standard whole leap February",
		PricingInput{Year: 2028, Month: time.February, DayEditions: whole(2028, time.February, EditionStandard)},
		[]string{
			"package:standard 29 day @ 13.7586206896551724 = 399.00",
			"mau_overage 0 MAU @ 0.015 = 0.00",
		},
		"399.00")

	// Audio: 30 s + 31 s = 61 s → 2 minutes; 2 × 0.99 / 1000 = 0.00198 → 0.00.
	// Video: 1,000,000 s / 60 = 16,666.67 → 16,667 minutes;
	// 16,667 × 3.99 = 66,501.33; / 1000 = 66.50133 → 66.50.
	f("calls",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper), MAU: 3,
			CallSeconds: AudioVideo{Audio: 30 + 31, Video: 1000000}},
		[]string{
			"package:developer 30 day @ 0 = 0.00",
			"call_minutes:audio 2 minute @ 0.00099 = 0.00",
			"call_minutes:video 16667 minute @ 0.00399 = 66.50",
		},
		"66.50")

	// Audio: 30,000 s = 500 minutes exactly; 500 × 0.99 / 1000 = 0.495 → 0.50.
	// No video seconds, no video line.
	f("audio call half cent",
		PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper),
			CallSeconds: AudioVideo{Audio: 30000}},
		[]string{
			"package:developer 30 day @ 0 = 0.00",
			"call_minutes:audio 500 minute @ 0.00099 = 0.50",
		},
		"0.50")
}

func TestPriceBillFields(t *testing.T) {
	pb := DefaultPriceBook()
	bill, err := pb.Price(PricingInput{
		Year: 2026, Month: time.December,
		DayEditions: month(2026, time.December, EditionDeveloper, 20, EditionPremium),
		MAU:         10250,
		CallSeconds: AudioVideo{Audio: 59, Video: 121},
	})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if bill.Edition != EditionPremium {
		t.Errorf("unexpected edition; got %q; want %q", bill.Edition, EditionPremium)
	}
	// 59 s → 1 minute; 121 s → 3 minutes.
	if want := (AudioVideo{Audio: 1, Video: 3}); bill.CallMinutes != want {
		t.Errorf("unexpected call minutes; got %+v; want %+v", bill.CallMinutes, want)
	}
	// 10,250 − 10,000.
	if bill.MAUOverage != 250 {
		t.Errorf("unexpected MAU overage; got %d; want %d", bill.MAUOverage, 250)
	}
	// Developer over its cap reports the overage even without a charge.
	bill, err = pb.Price(PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionDeveloper), MAU: 123})
	if err != nil {
		t.Fatalf("unexpected error: %s", err)
	}
	if bill.MAUOverage != 23 {
		t.Errorf("unexpected MAU overage; got %d; want %d", bill.MAUOverage, 23)
	}
	if want := []string{"developer edition hard cap of 100 MAU exceeded: 123 MAU"}; !slices.Equal(bill.Notes, want) {
		t.Errorf("unexpected notes; got %q; want %q", bill.Notes, want)
	}
}

func TestPriceInvalidInput(t *testing.T) {
	pb := DefaultPriceBook()
	valid := func() PricingInput {
		return PricingInput{Year: 2026, Month: time.November, DayEditions: whole(2026, time.November, EditionStandard)}
	}
	f := func(name string, mutate func(*PricingInput), wantErr error) {
		t.Helper()
		in := valid()
		mutate(&in)
		_, err := pb.Price(in)
		if !errors.Is(err, wantErr) {
			t.Errorf("%s: unexpected error; got %v; want %v", name, err, wantErr)
		}
	}
	f("too few days", func(in *PricingInput) { in.DayEditions = in.DayEditions[:29] }, ErrInvalidInput)
	f("days of another month", func(in *PricingInput) { in.DayEditions = whole(2026, time.October, EditionStandard) }, ErrInvalidInput)
	f("no days", func(in *PricingInput) { in.DayEditions = nil }, ErrInvalidInput)
	f("month 0", func(in *PricingInput) { in.Month = 0 }, ErrInvalidInput)
	f("month 13", func(in *PricingInput) { in.Month = 13 }, ErrInvalidInput)
	f("year 0", func(in *PricingInput) { in.Year = 0 }, ErrInvalidInput)
	f("negative MAU", func(in *PricingInput) { in.MAU = -1 }, ErrInvalidInput)
	f("negative audio", func(in *PricingInput) { in.CallSeconds.Audio = -1 }, ErrInvalidInput)
	f("negative video", func(in *PricingInput) { in.CallSeconds.Video = -1 }, ErrInvalidInput)
	f("negative community", func(in *PricingInput) { in.CommunityMessages = -1 }, ErrInvalidInput)
	f("unknown edition mid-month", func(in *PricingInput) { in.DayEditions[4] = "ultimate" }, ErrUnknownEdition)
	f("unknown edition at month end", func(in *PricingInput) { in.DayEditions[29] = "" }, ErrUnknownEdition)
}

func TestDaysIn(t *testing.T) {
	f := func(year int, m time.Month, want int) {
		t.Helper()
		if got := DaysIn(year, m); got != want {
			t.Errorf("unexpected days in %d-%02d; got %d; want %d", year, m, got, want)
		}
	}
	f(2026, time.January, 31)
	f(2026, time.February, 28)
	f(2028, time.February, 29)
	f(2000, time.February, 29)
	f(2100, time.February, 28)
	f(2026, time.April, 30)
	f(2026, time.November, 30)
	f(2026, time.December, 31)
}

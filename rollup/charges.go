package rollup

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// ErrInvalidInput is returned (wrapped) by Price for input it cannot price.
var ErrInvalidInput = errors.New("rollup: invalid pricing input")

// Charge item names. A package line is ItemPackagePrefix followed by the
// edition, as in "package:standard".
const (
	ItemPackagePrefix     = "package:"
	ItemMAUOverage        = "mau_overage"
	ItemCallAudio         = "call_minutes:audio"
	ItemCallVideo         = "call_minutes:video"
	ItemCommunityMessages = "community_messages"
)

// centPlaces is the number of decimal places every line amount is rounded to.
const centPlaces = 2

// unitPricePlaces is the number of decimal places of a unit price that is a
// non-terminating fraction (such as 399/31). Unit prices are informational;
// amounts are computed from the exact fraction.
const unitPricePlaces = 16

// AudioVideo holds one figure per call medium.
type AudioVideo struct {
	Audio, Video int64
}

// PricingInput is the usage of one app in one calendar month of the billing
// time zone.
type PricingInput struct {
	Year  int
	Month time.Month
	// DayEditions holds the edition in force at the end of each calendar day
	// of the month: DayEditions[0] is day 1. Its length must be
	// DaysIn(Year, Month).
	DayEditions []Edition
	// MAU is the exact number of distinct users who logged in during the
	// month.
	MAU int64
	// CallSeconds is the month's total call duration per medium.
	CallSeconds AudioVideo
	// CommunityMessages is the month's number of community downstream
	// messages.
	CommunityMessages int64
}

// Charge is one line of a bill: Quantity Units at UnitPrice each, for Amount.
type Charge struct {
	Item      string // one of the Item* names
	Quantity  decimal.Decimal
	Unit      string
	UnitPrice decimal.Decimal // may carry more than 2 decimal places
	Amount    decimal.Decimal // a multiple of 0.01; print with StringFixed(2)
}

// Bill is the priced month of one app.
type Bill struct {
	Edition     Edition // in force at the end of the month
	Charges     []Charge
	Total       decimal.Decimal // sum of Charges[i].Amount
	Currency    string          // ISO 4217 code, from the price book
	CallMinutes AudioVideo      // call seconds rounded up to whole minutes
	// MAUOverage is max(0, MAU − free MAU of Edition), billable or not.
	MAUOverage int64
	// Notes explain facts that did not produce a charge, such as a hard MAU
	// cap exceeded.
	Notes []string
}

// DaysIn returns the number of days in month m of year (Gregorian calendar).
func DaysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Price computes the bill of one app for one calendar month.
//
// All arithmetic is exact decimal arithmetic. Every line amount is rounded
// half-up (half away from zero) to 0.01 of the price book's currency, and
// Total is the sum of the rounded line amounts. Let D = DaysIn(in.Year,
// in.Month) and E = in.DayEditions[D-1], the edition in force at the end of
// the month (Bill.Edition). Lines appear in this order:
//
//  1. "package:<edition>", one line for each edition that appears in
//     in.DayEditions, in order of first appearance: Quantity is the number
//     of days at that edition (unit "day"), UnitPrice is monthly_fee / D
//     (exact, or to 16 decimal places when the fraction does not terminate;
//     informational), Amount is monthly_fee × days / D rounded to 0.01 from
//     the exact fraction. A whole month at one edition costs exactly
//     monthly_fee; an edition whose fee is 0 still gets a line (0.00) so the
//     statement shows its days. Each line is rounded on its own, so the lines
//     of a month with an upgrade may sum to 0.01 more or less than the exact
//     pro-rata fee.
//  2. "mau_overage": the free MAU quota, overage price and community
//     allowance are those of E alone; only the package fee is prorated.
//     Bill.MAUOverage = max(0, in.MAU − free_mau of E). If E has a
//     mau_overage_price, one line with Quantity = MAUOverage (unit "MAU",
//     present even when 0) and Amount = MAUOverage × mau_overage_price. If E
//     has none (the Developer hard cap), there is no line; when MAUOverage > 0
//     a note such as "developer edition hard cap of 100 MAU exceeded: 123 MAU"
//     is added to Bill.Notes.
//  3. "call_minutes:audio", then "call_minutes:video", each only when that
//     medium's seconds are > 0, on every edition: minutes = ceil(seconds / 60)
//     (also in Bill.CallMinutes), unit "minute", UnitPrice = price /
//     per_minutes, Amount = minutes × price / per_minutes.
//  4. "community_messages", only when E has community pricing and
//     in.CommunityMessages > community_included: Quantity = number of started
//     blocks = ceil((messages − community_included) / community_block), unit
//     "<community_block> messages", UnitPrice = community_block_price,
//     Amount = blocks × community_block_price. On other editions community
//     messages are not billed.
//
// Price returns an error wrapping ErrInvalidInput when in.Month is not 1–12,
// in.Year < 1, len(in.DayEditions) != D, or MAU, call seconds or community
// messages are negative; and an error wrapping ErrUnknownEdition when
// in.DayEditions holds an edition the price book does not define. Price does
// not enforce plan-change rules (one change a month, no way back to
// Developer): it prices the days it is given.
func (pb *PriceBook) Price(in PricingInput) (Bill, error) {
	if err := checkInput(in); err != nil {
		return Bill{}, err
	}
	days := DaysIn(in.Year, in.Month)
	end := in.DayEditions[days-1]
	ep, err := pb.edition(end)
	if err != nil {
		return Bill{}, fmt.Errorf("day %d: %w", days, err)
	}

	bill := Bill{
		Edition:  end,
		Charges:  make([]Charge, 0, 6),
		Currency: pb.currency,
	}

	// 1. Package fee, prorated by calendar day.
	if err := pb.packageCharges(&bill, in.DayEditions); err != nil {
		return Bill{}, err
	}

	// 2. MAU beyond the free quota of the end-of-month edition.
	bill.MAUOverage = max(0, in.MAU-ep.freeMAU)
	switch {
	case ep.hasOverage:
		q := decimal.NewFromInt(bill.MAUOverage)
		bill.Charges = append(bill.Charges, Charge{
			Item:      ItemMAUOverage,
			Quantity:  q,
			Unit:      "MAU",
			UnitPrice: ep.overagePrice,
			Amount:    q.Mul(ep.overagePrice).Round(centPlaces),
		})
	case bill.MAUOverage > 0:
		bill.Notes = append(bill.Notes, fmt.Sprintf(
			"%s edition hard cap of %d MAU exceeded: %d MAU", end, ep.freeMAU, in.MAU))
	}

	// 3. Calls, by whole started minute.
	bill.CallMinutes = AudioVideo{
		Audio: ceilDiv(in.CallSeconds.Audio, 60),
		Video: ceilDiv(in.CallSeconds.Video, 60),
	}
	if in.CallSeconds.Audio > 0 {
		bill.Charges = append(bill.Charges, pb.callCharge(ItemCallAudio, bill.CallMinutes.Audio, pb.audioPrice))
	}
	if in.CallSeconds.Video > 0 {
		bill.Charges = append(bill.Charges, pb.callCharge(ItemCallVideo, bill.CallMinutes.Video, pb.videoPrice))
	}

	// 4. Community messages beyond the allowance, by started block.
	if ep.hasCommunity && in.CommunityMessages > ep.communityIncluded {
		blocks := decimal.NewFromInt(ceilDiv(in.CommunityMessages-ep.communityIncluded, ep.communityBlock))
		bill.Charges = append(bill.Charges, Charge{
			Item:      ItemCommunityMessages,
			Quantity:  blocks,
			Unit:      strconv.FormatInt(ep.communityBlock, 10) + " messages",
			UnitPrice: ep.communityPrice,
			Amount:    blocks.Mul(ep.communityPrice).Round(centPlaces),
		})
	}

	bill.Total = decimal.Zero
	for _, c := range bill.Charges {
		bill.Total = bill.Total.Add(c.Amount)
	}
	return bill, nil
}

// packageCharges appends one prorated package line per edition in days, in
// order of first appearance.
func (pb *PriceBook) packageCharges(bill *Bill, days []Edition) error {
	// At most a few editions: count them in first-appearance order without a map.
	type run struct {
		e    Edition
		days int64
	}
	var buf [4]run
	runs := buf[:0]
next:
	for i, e := range days {
		for j := range runs {
			if runs[j].e == e {
				runs[j].days++
				continue next
			}
		}
		if _, err := pb.edition(e); err != nil {
			return fmt.Errorf("day %d: %w", i+1, err)
		}
		runs = append(runs, run{e: e, days: 1})
	}

	month := decimal.NewFromInt(int64(len(days)))
	for _, r := range runs {
		fee := pb.editions[r.e].monthlyFee
		q := decimal.NewFromInt(r.days)
		bill.Charges = append(bill.Charges, Charge{
			Item:      ItemPackagePrefix + string(r.e),
			Quantity:  q,
			Unit:      "day",
			UnitPrice: fee.DivRound(month, unitPricePlaces),
			Amount:    fee.Mul(q).DivRound(month, centPlaces),
		})
	}
	return nil
}

func (pb *PriceBook) callCharge(item string, minutes int64, price decimal.Decimal) Charge {
	q := decimal.NewFromInt(minutes)
	per := decimal.NewFromInt(pb.callPerMinutes)
	return Charge{
		Item:      item,
		Quantity:  q,
		Unit:      "minute",
		UnitPrice: price.DivRound(per, unitPricePlaces),
		Amount:    q.Mul(price).DivRound(per, centPlaces),
	}
}

func checkInput(in PricingInput) error {
	if in.Month < time.January || in.Month > time.December {
		return fmt.Errorf("%w: month %d not in 1–12", ErrInvalidInput, in.Month)
	}
	if in.Year < 1 {
		return fmt.Errorf("%w: year %d < 1", ErrInvalidInput, in.Year)
	}
	if days := DaysIn(in.Year, in.Month); len(in.DayEditions) != days {
		return fmt.Errorf("%w: %d day editions for %d-%02d; want %d",
			ErrInvalidInput, len(in.DayEditions), in.Year, in.Month, days)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MAU", in.MAU},
		{"audio call seconds", in.CallSeconds.Audio},
		{"video call seconds", in.CallSeconds.Video},
		{"community messages", in.CommunityMessages},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: negative %s: %d", ErrInvalidInput, f.name, f.v)
		}
	}
	return nil
}

// ceilDiv returns ⌈a/b⌉ for a >= 0 and b > 0, without overflow.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

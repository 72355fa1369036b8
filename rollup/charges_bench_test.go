package rollup

import (
	"testing"
	"time"
)

func BenchmarkPrice(b *testing.B) {
	pb := DefaultPriceBook()
	in := PricingInput{
		Year:              2026,
		Month:             time.December,
		DayEditions:       month(2026, time.December, EditionStandard, 17, EditionPremium),
		MAU:               12345,
		CallSeconds:       AudioVideo{Audio: 61, Video: 1000000},
		CommunityMessages: 123456789,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pb.Price(in); err != nil {
			b.Fatal(err)
		}
	}
}

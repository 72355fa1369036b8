package aggregate

import (
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

func TestEvictDropsIDsBeforeMinDay(t *testing.T) {
	s := benchState()
	day := s.minDay + 10
	s.ids[xxh3.Uint128{Lo: 1}] = idEntry{offset: 1, day: day}
	s.ids[xxh3.Uint128{Lo: 2}] = idEntry{offset: 2, day: day + 1}
	f := func(minDay, want int) {
		t.Helper()
		s.minDay = day + schemas.Day(minDay)
		s.evict(s.minDay)
		if len(s.ids) != want {
			t.Fatalf("unexpected ids after evict with minDay %+d; got %d; want %d", minDay, len(s.ids), want)
		}
	}
	f(0, 2)
	s.ids[xxh3.Uint128{Lo: 3}] = idEntry{offset: 3, day: day}
	f(0, 3) // same minDay: nothing is older
	f(1, 1)
	f(1, 1)
	f(2, 0)
}

package aggregate

import (
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

func TestEvictDropsIDsBeforeMinDay(t *testing.T) {
	s := benchState()
	day := s.minDay + 10
	s.ids.Add(xxh3.Uint128{Hi: 1}, day)
	s.ids.Add(xxh3.Uint128{Hi: 2}, day+1)
	f := func(minDay, want int) {
		t.Helper()
		s.minDay = day + schemas.Day(minDay)
		s.evict(s.minDay)
		if s.ids.Len() != want {
			t.Fatalf("unexpected ids after evict with minDay %+d; got %d; want %d", minDay, s.ids.Len(), want)
		}
	}
	f(0, 2)
	s.ids.Add(xxh3.Uint128{Hi: 3}, day)
	f(0, 3) // same minDay: nothing is older
	f(1, 1)
	f(1, 1)
	f(2, 0)
}

func TestEvictKeepsRecentlyUsedOldDays(t *testing.T) {
	s := newPartitionState(0, nil)
	loads := 0
	s.load = func(dayKey) (Counters, uint64, error) { loads++; return Counters{Logins: 7}, 3, nil }
	today := schemas.DayFromDate(2026, 11, 25)
	s.loadedFrom = today - 1
	old := dayKey{app: 1, day: today - 20}
	use := func() {
		t.Helper()
		st, err := s.day(old)
		if err != nil || st.c.Logins != 7 || st.version != 3 {
			t.Fatalf("unexpected day state %+v, %v", st, err)
		}
	}
	use()
	for i := 0; i < idleFlushes-1; i++ {
		s.evict(today - 1)
	}
	use() // still in memory: no second load
	if loads != 1 {
		t.Fatalf("unexpected loads; got %d; want 1", loads)
	}
	for i := 0; i < idleFlushes; i++ {
		s.evict(today - 1)
	}
	if _, ok := s.days[old]; ok {
		t.Fatal("idle old day not evicted")
	}
	use()
	if loads != 2 {
		t.Fatalf("unexpected loads after eviction; got %d; want 2", loads)
	}
}

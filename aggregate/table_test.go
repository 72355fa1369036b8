package aggregate

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

// TestIDSetMatchesMap adds, looks up and drops ids through several growths
// and sweeps, and compares every answer with a Go map.
func TestIDSetMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	first := schemas.DayFromDate(2026, 11, 1)
	s := newIDSet(0)
	defer s.mem.free()
	want := map[xxh3.Uint128]schemas.Day{}
	var all []xxh3.Uint128
	minDay := first
	for round := range 40 {
		for range 5000 {
			h := xxh3.Uint128{Hi: r.Uint64(), Lo: r.Uint64()}
			if round%3 == 0 && len(all) > 0 {
				h = all[r.IntN(len(all))] // an id seen before, maybe dropped
			}
			day := minDay + schemas.Day(r.IntN(62))
			if _, ok := want[h]; ok {
				continue
			}
			if _, ok := s.Get(h); ok {
				t.Fatalf("round %d: id %x reported before it was added", round, h)
			}
			s.Add(h, day)
			want[h] = day
			all = append(all, h)
		}
		if round%5 == 4 {
			minDay += 7
			s.DropBefore(minDay)
			for h, d := range want {
				if d < minDay {
					delete(want, h)
				}
			}
		}
		if s.Len() != len(want) {
			t.Fatalf("round %d: unexpected length; got %d; want %d", round, s.Len(), len(want))
		}
		for _, h := range all {
			d, ok := s.Get(h)
			wd, wok := want[h]
			if ok != wok || d != wd {
				t.Fatalf("round %d: unexpected Get(%x); got %v, %v; want %v, %v", round, h, d, ok, wd, wok)
			}
		}
	}
	if s.Len() < 50000 {
		t.Fatalf("the test did not grow the set; got %d ids", s.Len())
	}
	s.Reset()
	if s.Len() != 0 {
		t.Fatalf("unexpected length after Reset; got %d", s.Len())
	}
	if _, ok := s.Get(all[0]); ok {
		t.Fatal("an id survived Reset")
	}
}

// TestIDSetKeepsDaysAcrossTheWrap checks days stored modulo 2^16 around a
// wrap of the low 16 bits.
func TestIDSetKeepsDaysAcrossTheWrap(t *testing.T) {
	s := newIDSet(0)
	defer s.mem.free()
	base := schemas.Day(3<<16 - 10)
	for i := range 40 {
		s.Add(xxh3.Uint128{Hi: uint64(i) * 0x9e3779b97f4a7c15, Lo: 1 << 20}, base+schemas.Day(i))
	}
	for i := range 40 {
		if d, ok := s.Get(xxh3.Uint128{Hi: uint64(i) * 0x9e3779b97f4a7c15, Lo: 1 << 20}); !ok || d != base+schemas.Day(i) {
			t.Fatalf("unexpected day of id %d; got %v, %v; want %v", i, d, ok, base+schemas.Day(i))
		}
	}
}

// TestUserCacheNeverClaimsUnseen fills a small cache far past its size: a
// key it says it has seen must have been put in (a false "seen" would lose
// a user_days row), and recent keys are mostly remembered.
func TestUserCacheNeverClaimsUnseen(t *testing.T) {
	c := newUserCache(64)
	defer c.mem.free()
	seen := map[xxh3.Uint128]bool{}
	r := rand.New(rand.NewPCG(3, 4))
	var keys []xxh3.Uint128
	hits := 0
	for i := range 100000 {
		var k xxh3.Uint128
		if i%2 == 1 && len(keys) > 0 {
			k = keys[len(keys)-1-r.IntN(min(len(keys), 8))] // a recent key again
		} else {
			k = userKey(uint32(r.IntN(10)), 20000, string(rune('a'+r.IntN(26)))+string(rune('a'+r.IntN(26)))+string(rune('a'+r.IntN(26))))
		}
		got := c.Seen(k)
		if got && !seen[k] {
			t.Fatalf("key %x reported seen before it was put", k)
		}
		if got {
			hits++
		}
		seen[k] = true
		keys = append(keys, k)
	}
	if hits < 40000 {
		t.Fatalf("the cache forgot recent keys; got %d hits of 50000 repeats", hits)
	}
}

func TestUserKeyDistinct(t *testing.T) {
	long := strings.Repeat("u", schemas.MaxUserBytes)
	keys := []xxh3.Uint128{userKey(1, 2, long), userKey(1, 2, long[1:]), userKey(1, 2, "u"), userKey(1, 3, "u"), userKey(2, 2, "u"), idHash(1, "u")}
	seen := map[xxh3.Uint128]int{}
	for i, k := range keys {
		if j, ok := seen[k]; ok {
			t.Fatalf("keys %d and %d hash alike", j, i)
		}
		seen[k] = i
	}
}

// TestIDHashUnchanged pins idHash: event_ids rows written by earlier
// versions must keep matching.
func TestIDHashUnchanged(t *testing.T) {
	var buf []byte
	buf = append(buf, 0x01, 0x00, 0x00, 0x00) // app 1, little-endian
	buf = append(buf, "abc"...)
	if got, want := idHash(1, "abc"), xxh3.Hash128(buf); got != want {
		t.Fatalf("unexpected idHash; got %x; want %x", got, want)
	}
}

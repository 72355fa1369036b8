package aggregate

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

func randomHash(r *rand.Rand) xxh3.Uint128 { return xxh3.Uint128{Hi: r.Uint64(), Lo: r.Uint64()} }

// TestIDFilterNoFalseNegatives adds millions of ids over a few days, through
// several slice growths, and finds every one; ids never added hit at about
// the rate the design gives.
func TestIDFilterNoFalseNegatives(t *testing.T) {
	const bits = 16
	f := newIDFilter(bits)
	defer f.free()
	r := rand.New(rand.NewPCG(1, 2))
	n := 3_000_000
	if testing.Short() {
		n = 300_000
	}
	added := make([]xxh3.Uint128, n)
	days := []schemas.Day{20000, 20001, 20002}
	for i := range added {
		added[i] = randomHash(r)
		f.Add(added[i], days[i%len(days)])
	}
	if got := f.Len(); got != n {
		t.Fatalf("unexpected Len; got %d; want %d", got, n)
	}
	for i, h := range added {
		if !f.MayContain(h) {
			t.Fatalf("false negative: id %d of %d not found", i, n)
		}
	}
	// Each probed slice adds its own false positives: a full slice at
	// bits per id b has a word's bit set with p = 1-(1-1/64)^(512/b), and
	// a hit needs all eight.
	probes := 1_000_000
	hits := 0
	for range probes {
		if f.MayContain(randomHash(r)) {
			hits++
		}
	}
	slices := 0
	for _, d := range f.days {
		slices += len(d.slices)
	}
	p := 1 - math.Pow(1-1.0/64, 512/bits)
	perSlice := math.Pow(p, 8)
	rate := float64(hits) / float64(probes)
	perID := float64(f.Bytes()) / float64(n)
	t.Logf("%d ids, %d days, %d slices, %.2f B per id; false hits %.4f%% (%.4f%% per full slice by design)",
		n, len(f.days), slices, perID, 100*rate, 100*perSlice)
	if rate > 2*perSlice*float64(slices) {
		t.Errorf("false-positive rate %.4f%% above twice the design's %.4f%% × %d slices", 100*rate, 100*perSlice, slices)
	}
	if perID > 2*bits/8.0+0.1 {
		t.Errorf("memory %.2f B per id; want at most twice %v bits", perID, bits)
	}

	f.DropBefore(20002)
	if len(f.days) != 1 || f.Len() != n/3 {
		t.Fatalf("after DropBefore: %d days, %d ids; want 1 day, %d ids", len(f.days), f.Len(), n/3)
	}
	for i := 2; i < n; i += 3 {
		if !f.MayContain(added[i]) {
			t.Fatalf("false negative after DropBefore: id %d", i)
		}
	}
}

// TestIDFilterSizedSlice: a day made with a hint of its ids holds them in
// one slice at the bits per id asked.
func TestIDFilterSizedSlice(t *testing.T) {
	f := newIDFilter(10)
	defer f.free()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 2 * smallSlice
	f.dayOf(7, n)
	for range n {
		f.Add(randomHash(r), 7)
	}
	if len(f.days) != 1 || len(f.days[0].slices) != 1 {
		t.Fatalf("unexpected layout: %d days, %d slices; want 1, 1", len(f.days), len(f.days[0].slices))
	}
	if perID := float64(f.Bytes()) / n; perID > 1.26 {
		t.Fatalf("unexpected memory; got %.3f B per id; want 1.25", perID)
	}
}

// TestResolveParked folds parked events as the exact table would: an id
// found in event_ids at another offset is a duplicate (on the day it was
// first seen), at the event's own offset a replay; one not found is new,
// and a second parked event with its id a duplicate of it.
func TestResolveParked(t *testing.T) {
	loc := time.FixedZone("+08:00", 8*3600)
	s := newPartitionState(0, loc)
	defer s.free()
	s.filter = newIDFilter(0.001) // one block per slice: every id a hit soon
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, loc)
	day := schemas.DayOf(now, loc)
	s.minDay = day - 62
	for i := range 1000 {
		s.filter.Add(idHash(1, "x"+string(rune('a'+i%26))+string(rune(i))), day-1)
	}
	ev := func(id string) []byte {
		return []byte(`{"id":"` + id + `","type":"login","app":1,"user":"u","time":"` + now.Format(time.RFC3339) + `"}`)
	}
	apply := func(off int64, id string) Outcome {
		t.Helper()
		out, err := s.Apply(off, []byte("1"), ev(id))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// dup: stored at offset 3 on the day before; replay: stored at 11,
	// read again at 11; new twice: a false hit, then its own repeat.
	for i, id := range []string{"dup", "replay", "new", "new"} {
		if out := apply(int64(10+i), id); out != Deferred {
			t.Fatalf("event %q: unexpected outcome; got %v; want Deferred (nearly every id is a filter hit)", id, out)
		}
	}
	stored := map[xxh3.Uint128]storedID{
		idHash(1, "dup"):    {day: day - 1, offset: 3},
		idHash(1, "replay"): {day: day, offset: 11},
	}
	var got []Outcome
	var falseHits int
	if err := s.resolveParked(stored, func(out Outcome, falseHit bool) {
		got = append(got, out)
		if falseHit {
			falseHits++
		}
	}); err != nil {
		t.Fatal(err)
	}
	want := []Outcome{Duplicate, Counted, Counted, Duplicate}
	if len(got) != len(want) {
		t.Fatalf("unexpected outcomes; got %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("unexpected outcomes; got %v; want %v", got, want)
		}
	}
	if falseHits != 1 || len(s.parked) != 0 {
		t.Fatalf("unexpected false hits %d, parked %d; want 1, 0", falseHits, len(s.parked))
	}
	// The duplicate counts on the day its id was first seen; the logins
	// (replay and new) on today.
	if c := s.days[dayKey{1, day - 1}].c; c.Duplicates != 1 {
		t.Fatalf("unexpected duplicates on the first day; got %d; want 1", c.Duplicates)
	}
	if c := s.days[dayKey{1, day}].c; c.Logins != 2 || c.Duplicates != 1 {
		t.Fatalf("unexpected counters of today; got %d logins, %d duplicates; want 2, 1", c.Logins, c.Duplicates)
	}
	if len(s.pendingIDs) != 1 {
		t.Fatalf("unexpected id rows to write; got %d; want 1 (the new id only)", len(s.pendingIDs))
	}
	// Once written, the id moves to the filter and out of the exact set.
	s.durable(s.pendingIDs)
	if _, ok := s.ids.Get(idHash(1, "new")); ok || !s.filter.MayContain(idHash(1, "new")) {
		t.Fatal("a durable id must be in the filter, not in the exact set")
	}
}

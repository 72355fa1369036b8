package rollup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/axiomhq/hyperloglog"
)

// mergeSketch merges sk into the app's sketch of the same precision, or keeps
// it apart when there is none: how the month's sketches were merged before
// sketchEstimator, one library Merge per sketch in the order read, kept as
// the reference it must agree with.
func mergeSketch(sketches map[uint32][]*hyperloglog.Sketch, app uint32, sk *hyperloglog.Sketch) error {
	for _, into := range sketches[app] {
		err := into.Merge(sk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, hyperloglog.ErrorPrecisionMismatch) {
			return fmt.Errorf("merge sketches of app %d: %w", app, err)
		}
	}
	sketches[app] = append(sketches[app], sk)
	return nil
}

// mergedEstimates is the reference: each app's sketches decoded and merged
// by the library in the order given, the estimate the largest of each
// precision's.
func mergedEstimates(rows []sketchRow) (map[uint32]uint64, error) {
	sketches := map[uint32][]*hyperloglog.Sketch{}
	for _, r := range rows {
		sk := new(hyperloglog.Sketch)
		if err := sk.UnmarshalBinary(r.blob); err != nil {
			return nil, err
		}
		if err := mergeSketch(sketches, r.app, sk); err != nil {
			return nil, err
		}
	}
	out := map[uint32]uint64{}
	for app, sks := range sketches {
		for _, sk := range sks {
			out[app] = max(out[app], sk.Estimate())
		}
	}
	return out, nil
}

func estimatorEstimates(rows []sketchRow, workers int) (map[uint32]uint64, error) {
	e := newSketchEstimator(workers)
	for _, r := range rows {
		e.add(r.app, r.blob)
	}
	return e.finish()
}

func sketchOf(t testing.TB, p uint8, users []string) *hyperloglog.Sketch {
	sk, err := hyperloglog.NewSketch(p, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		sk.Insert([]byte(u))
	}
	return sk
}

func marshal(t testing.TB, sk *hyperloglog.Sketch) []byte {
	b, err := sk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMergeSketchPrecisions estimates an app's sketches of two precisions,
// as a month spanning an upgrade of the aggregator holds: those of a
// precision unite, the two unions stay apart, and the estimate is the
// larger.
func TestMergeSketchPrecisions(t *testing.T) {
	users := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, "u"+strconv.Itoa(i))
		}
		return out
	}
	var rows []sketchRow
	for _, s := range []struct {
		p        uint8
		from, to int
	}{{16, 0, 100}, {17, 50, 300}, {16, 100, 200}, {17, 0, 10}, {16, 150, 330}} {
		rows = append(rows, sketchRow{app: 7, blob: marshal(t, sketchOf(t, s.p, users(s.from, s.to)))})
	}
	got, err := estimatorEstimates(rows, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse sketches this small count exactly: 330 users of precision 16,
	// 300 of precision 17.
	if got[7] != 330 {
		t.Fatalf("unexpected estimate; got %d; want 330", got[7])
	}
}

// TestSketchUnionMatchesMerge requires the estimator to give, for every
// app, the estimate the library's merges give: apps of one to forty
// sketches, sparse (with keys in the tmp set or only in the list, in
// binary version 1 or 2) and dense, of four precisions, empty ones, unions
// that stay sparse, cross m or start dense, users repeated across days.
func TestSketchUnionMatchesMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var rows []sketchRow
	var key []byte
	precisions := []uint8{10, 14, 16, 17}
	for app := uint32(1); app <= 150; app++ {
		p := precisions[rng.IntN(len(precisions))]
		pool := 1 + rng.IntN(100_000)
		switch app % 10 {
		case 0: // near the sparse limit of p 10 and 14
			p, pool = precisions[rng.IntN(2)], 1000+rng.IntN(20_000)
		case 1: // small
			pool = 1 + rng.IntN(200)
		}
		days := 1 + rng.IntN(30)
		for range days {
			q := p
			if rng.IntN(25) == 0 { // written by another version of the aggregator
				q = precisions[rng.IntN(len(precisions))]
			}
			n := rng.IntN(min(pool, 8_000) + 1)
			if rng.IntN(5) == 0 {
				n = rng.IntN(pool/10 + 2)
			}
			sk, err := hyperloglog.NewSketch(q, true)
			if err != nil {
				t.Fatal(err)
			}
			for range n {
				sk.Insert(strconv.AppendInt(key[:0], int64(app)<<32|int64(rng.IntN(pool)), 10))
			}
			if rng.IntN(2) == 0 {
				sk.Estimate() // moves the tmp set into the list
			}
			blob := marshal(t, sk)
			if blob[3] == 1 && rng.IntN(4) == 0 {
				blob[0] = 1 // the sparse form of version 1 is the same
			}
			rows = append(rows, sketchRow{app: app, blob: blob})
		}
	}
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	want, err := mergedEstimates(rows)
	if err != nil {
		t.Fatal(err)
	}
	sparse, dense := 0, 0
	for _, r := range rows {
		if r.blob[3] == 1 {
			sparse++
		} else {
			dense++
		}
	}
	if sparse == 0 || dense == 0 {
		t.Fatalf("the rows do not cover both forms: %d sparse, %d dense", sparse, dense)
	}
	for _, workers := range []int{1, 3} {
		got, err := estimatorEstimates(rows, workers)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d workers: estimates of %d apps; want %d", workers, len(got), len(want))
		}
		for app, w := range want {
			if got[app] != w {
				t.Errorf("%d workers: app %d: estimate %d; the library's merges give %d", workers, app, got[app], w)
			}
		}
	}
	t.Logf("%d sketches (%d sparse, %d dense) of %d apps", len(rows), sparse, dense, len(want))
}

// TestSketchUnionBadRows requires a sketch that the library refuses to be
// refused by the estimator too, naming its app, whether its structure or a
// key is wrong.
func TestSketchUnionBadRows(t *testing.T) {
	good := marshal(t, sketchOf(t, 17, []string{"a", "b", "c"}))
	good2 := marshal(t, sketchOf(t, 17, []string{"d"}))
	sk := sketchOf(t, 17, []string{"a", "b", "c"})
	sk.Estimate()
	listed := marshal(t, sk) // keys in the list only
	bad := map[string][]byte{
		"short":      good[:6],
		"truncated":  good[:len(good)-1],
		"version":    append([]byte{3}, good[1:]...),
		"tmp set":    append(append([]byte{}, good[:7]...), good[7]+1),
		"list count": func() []byte { b := append([]byte{}, listed...); b[11]++; return b }(),
		"list last":  func() []byte { b := append([]byte{}, listed...); b[15]++; return b }(),
		"trailing":   append(append([]byte{}, listed...), 0),
		"key rho": func() []byte {
			b := append([]byte{}, good...)
			b[8], b[9], b[10], b[11] = 0xff, 0xff, 0xff, 0xff
			return b
		}(),
		"v2 byte 2":   func() []byte { b := append([]byte{}, good...); b[2] = 1; return b }(),
		"tmp set > m": tmpSetOver(t),
		"non-minimal": func() []byte {
			b := append([]byte{}, listed[:len(listed)-1]...)
			return append(b, 0x80|listed[len(listed)-1], 0)
		}(),
	}
	for name, blob := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := mergedEstimates([]sketchRow{{app: 9, blob: blob}}); err == nil {
				t.Skip("the library takes this form")
			}
			_, err := estimatorEstimates([]sketchRow{{app: 5, blob: good2}, {app: 9, blob: blob}, {app: 5, blob: good}}, 2)
			if err == nil {
				t.Fatal("a sketch the library refuses was taken")
			}
			if want := "app 9"; !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %s", err, want)
			}
		})
	}
}

// TestSortKeys compares the radix sort with slices.Sort, around the size
// where it takes over, with repeats and the full range of keys.
func TestSortKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2047, 2048, 2049, 100_000} {
		keys := make([]uint32, n)
		for i := range keys {
			keys[i] = rng.Uint32()
			if i%3 == 0 {
				keys[i] &= 0xff // repeats
			}
		}
		want := slices.Clone(keys)
		slices.Sort(want)
		sortKeys(keys)
		if !slices.Equal(keys, want) {
			t.Fatalf("%d keys: not sorted as slices.Sort sorts them", n)
		}
	}
}

// tmpSetOver is a sparse sketch of precision 4 (m = 16) whose tmp set
// holds 17 keys, each valid: more than the library takes.
func tmpSetOver(t *testing.T) []byte {
	b := []byte{2, 4, 0, 1, 0, 0, 0, 17}
	for i := range 17 {
		b = binary.BigEndian.AppendUint32(b, uint32(i+1)<<12)
	}
	return append(b, make([]byte, 12)...) // an empty list
}

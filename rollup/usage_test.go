package rollup

import (
	"strconv"
	"testing"

	"github.com/axiomhq/hyperloglog"
)

// TestMergeSketchPrecisions merges an app's sketches of two precisions, as a
// month spanning an upgrade of the aggregator holds: those of a precision
// merge together, and the two groups stay apart.
func TestMergeSketchPrecisions(t *testing.T) {
	mk := func(p uint8, from, to int) *hyperloglog.Sketch {
		sk, err := hyperloglog.NewSketch(p, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			sk.Insert([]byte("u" + strconv.Itoa(i)))
		}
		return sk
	}
	sketches := map[uint32][]*hyperloglog.Sketch{}
	for _, sk := range []*hyperloglog.Sketch{mk(16, 0, 100), mk(17, 50, 300), mk(16, 100, 200), mk(17, 0, 10)} {
		if err := mergeSketch(sketches, 7, sk); err != nil {
			t.Fatal(err)
		}
	}
	got := sketches[7]
	if len(got) != 2 {
		t.Fatalf("unexpected sketch groups; got %d; want 2", len(got))
	}
	// Sparse sketches this small count exactly.
	if a, b := got[0].Estimate(), got[1].Estimate(); a != 200 || b != 260 {
		t.Fatalf("unexpected estimates of the groups; got %d and %d; want 200 and 260", a, b)
	}
}

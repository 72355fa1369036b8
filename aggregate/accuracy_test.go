package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/axiomhq/hyperloglog"
	"github.com/zeebo/xxh3"
)

// TestMAUAccuracy measures the relative error of the MAU estimate of the
// HyperLogLog sketches, over seeded trials at several cardinalities, for
// precision 14, 16 and 17 (sparse, as NewSketch makes them) and 18 (the
// most axiomhq allows). The billed MAU is exact (uniqExact over user_days); the
// estimate is for comparison only. It runs about a minute per precision
// on 2 cores, so only with IMMETER_ACCURACY=1 (IMMETER_ACCURACY_TRIALS sets
// the trials per size, default 100). It says whether the sketch the project
// uses (NewSketch) stays within 1% at p99 at every size; it reports, it
// does not fail.
func TestMAUAccuracy(t *testing.T) {
	if os.Getenv("IMMETER_ACCURACY") != "1" {
		t.Skip("accuracy table: set IMMETER_ACCURACY=1 (about 3 minutes)")
	}
	trials := 100
	if v := os.Getenv("IMMETER_ACCURACY_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("IMMETER_ACCURACY_TRIALS: want a positive integer; got %q", v)
		}
		trials = n
	}
	sizes := []int{1_000, 10_000, 100_000, 1_000_000, 10_000_000}
	type variant struct {
		name string
		make func() *hyperloglog.Sketch
	}
	variants := []variant{
		{"p14 sparse (New14)", hyperloglog.New14},
		{"p16 sparse (New16)", hyperloglog.New16},
		{"p17 sparse (NewSketch, used)", NewSketch},
		{"p18 sparse", func() *hyperloglog.Sketch { sk, _ := hyperloglog.NewSketch(18, true); return sk }},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| sketch | users | trials | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|---|\n")
	worstUsed := 0.0
	for _, v := range variants {
		for _, n := range sizes {
			errs := relErrors(v.make, n, trials)
			q := func(p float64) float64 { return errs[min(len(errs)-1, int(math.Ceil(p*float64(len(errs))))-1)] }
			fmt.Fprintf(&table, "| %s | %d | %d | %.3f%% | %.3f%% | %.3f%% | %.3f%% |\n",
				v.name, n, trials, 100*q(0.50), 100*q(0.95), 100*q(0.99), 100*errs[len(errs)-1])
			if strings.Contains(v.name, "used") {
				worstUsed = max(worstUsed, q(0.99))
			}
		}
	}
	t.Logf("relative error |estimate - exact| / exact, trial k hashes users with seed k:\n%s", table.String())
	verdict := "within"
	if worstUsed > 0.01 {
		verdict = "NOT within"
	}
	t.Logf("the sketch in use (NewSketch) is %s 1%% at p99: worst p99 %.3f%%", verdict, 100*worstUsed)
}

// relErrors returns the sorted relative errors of sketches of n distinct
// users over trials seeds. Users are hashed as the aggregator hashes them,
// with a 64-bit hash of good quality (xxh3 of the user number, seeded by
// the trial), straight into the sketch.
func relErrors(mk func() *hyperloglog.Sketch, n, trials int) []float64 {
	errs := make([]float64, trials)
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			var buf [8]byte
			for k := range next {
				sk := mk()
				seed := uint64(k)*0x9e3779b97f4a7c15 + uint64(n)
				for i := range uint64(n) {
					binary.LittleEndian.PutUint64(buf[:], i)
					sk.InsertHash(xxh3.HashSeed(buf[:], seed))
				}
				errs[k] = math.Abs(float64(sk.Estimate())-float64(n)) / float64(n)
			}
		})
	}
	for k := range trials {
		next <- k
	}
	close(next)
	wg.Wait()
	slices.Sort(errs)
	return errs
}

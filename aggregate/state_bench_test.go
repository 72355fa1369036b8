package aggregate

import (
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/internal/simulate"
	"github.com/immeter/immeter/schemas"
)

// benchStreamEvents is the size of the stream the core benchmarks fold.
const benchStreamEvents = 1_000_000

// encodedStream is a pre-generated stream: event i is
// data[ends[i-1]:ends[i]], its key keys[keyEnds[i-1]:keyEnds[i]]. It holds
// no pointers per event, so the collector does not scan it.
type encodedStream struct {
	data, keys    []byte
	ends, keyEnds []int32
}

func (s *encodedStream) len() int { return len(s.ends) }

func (s *encodedStream) event(i int) []byte { return span(s.data, s.ends, i) }
func (s *encodedStream) key(i int) []byte   { return span(s.keys, s.keyEnds, i) }

func span(b []byte, ends []int32, i int) []byte {
	var start int32
	if i > 0 {
		start = ends[i-1]
	}
	return b[start:ends[i]:ends[i]]
}

var benchStream = sync.OnceValue(func() *encodedStream {
	return genStream(simulate.Config{Seed: 1, Duplicates: 0.001}, benchStreamEvents)
})

// genStream encodes n events of cfg: by default 100k Zipf-skewed apps,
// 10M users, Zipf-skewed per app, 60% messages, 35% logins, 5% other.
func genStream(cfg simulate.Config, n int) *encodedStream {
	g, err := simulate.New(cfg)
	if err != nil {
		panic(err)
	}
	s := &encodedStream{data: make([]byte, 0, n*160), ends: make([]int32, 0, n),
		keys: make([]byte, 0, n*10), keyEnds: make([]int32, 0, n)}
	for range n {
		var app uint32
		app, s.data = g.Next(s.data)
		s.ends = append(s.ends, int32(len(s.data)))
		s.keys = strconv.AppendUint(s.keys, uint64(app), 10)
		s.keyEnds = append(s.keyEnds, int32(len(s.keys)))
	}
	return s
}

// benchState returns a partition state that accepts the stream's times.
func benchState() *partitionState {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	s := newPartitionState(0, loc)
	s.minDay = schemas.DayOf(simulate.DefaultStart, loc) - 62
	return s
}

// truncatePending drops the rows a flush would write, without I/O.
func truncatePending(s *partitionState) {
	s.pendingUsers = s.pendingUsers[:0]
	s.pendingIDs = s.pendingIDs[:0]
	s.pendingPlans = s.pendingPlans[:0]
	s.pendingDLQ = s.pendingDLQ[:0]
}

// BenchmarkApply is the aggregation core: decode, validate, time window,
// dedup, per-day counters, user sets and sketches, no I/O. One op folds the
// whole stream (1M events) into a fresh partition state, dropping the
// pending rows every 100k events as a flush would (MaxPending).
func BenchmarkApply(b *testing.B) {
	st := benchStream()
	b.ReportAllocs()
	b.SetBytes(int64(len(st.data)))
	var counted int
	cpu0 := cpuTime()
	for b.Loop() {
		s := benchState()
		counted = 0
		for i := range st.len() {
			out, err := s.Apply(int64(i), st.key(i), st.event(i))
			if err != nil {
				b.Fatal(err)
			}
			if out == Counted {
				counted++
			}
			if i%100_000 == 99_999 {
				truncatePending(s)
			}
		}
		s.free()
	}
	if counted < st.len()*99/100 {
		b.Fatalf("unexpected count of counted events; got %d of %d", counted, st.len())
	}
	cpu := cpuTime() - cpu0
	events := float64(b.N) * float64(st.len())
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	// On a shared machine the wall clock counts others' work too; the
	// process's CPU time (GC included) per event is what a core does.
	b.ReportMetric(events/cpu.Seconds(), "events/cpu-s")
}

func BenchmarkIDHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = idHash(1400012345, "7f3c2a9e41d84b0c9a1e5d2f6b7c8d90")
	}
}

// BenchmarkDedup measures the id set at 1M ids: inserting new ids (with the
// set's growth), and looking up ids already there. bytes/id is the memory the
// set holds per id.
func BenchmarkDedup(b *testing.B) {
	const n = 1 << 20
	hashes := make([]xxh3.Uint128, n)
	for i := range hashes {
		hashes[i] = idHash(1400000001+uint32(i%100000), "id-"+strconv.Itoa(i))
	}
	b.Run("insert", func(b *testing.B) {
		b.ReportAllocs()
		var bytes int
		for b.Loop() {
			m := newIDSet(20000)
			for _, h := range hashes {
				m.Add(h, 20000)
			}
			bytes = m.Bytes()
			m.mem.free()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/id")
		b.ReportMetric(float64(bytes)/n, "bytes/id")
	})
	b.Run("lookup", func(b *testing.B) {
		m := newIDSet(20000)
		defer m.mem.free()
		for _, h := range hashes {
			m.Add(h, 20000)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := m.Get(hashes[i&(n-1)]); !ok {
				b.Fatal("missing id")
			}
			i += 7919 // a prime stride: no cache-friendly order
		}
	})
	// The filter of ids already in event_ids (DEDUP_FILTER_BITS=16), one
	// day: adding, and looking up ids it does not hold (the common case:
	// a new event's id); false hits/id is the share it would send to
	// event_ids.
	b.Run("filter/insert", func(b *testing.B) {
		b.ReportAllocs()
		var bytes int
		for b.Loop() {
			f := newIDFilter(16)
			for _, h := range hashes {
				f.Add(h, 20000)
			}
			bytes = f.Bytes()
			f.free()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/id")
		b.ReportMetric(float64(bytes)/n, "bytes/id")
	})
	b.Run("filter/lookup", func(b *testing.B) {
		f := newIDFilter(16)
		defer f.free()
		for _, h := range hashes {
			f.Add(h, 20000)
		}
		b.ReportAllocs()
		i, hits := uint64(0), 0
		for b.Loop() {
			i++
			if f.MayContain(xxh3.Uint128{Hi: i * 0x9e3779b97f4a7c15, Lo: i * 0xc2b2ae3d27d4eb4f}) {
				hits++
			}
		}
		b.ReportMetric(float64(hits)/float64(b.N), "false-hits/id")
	})
}

// BenchmarkSketch measures the HyperLogLog operations of the aggregator
// (precision 17, sparse until it grows) and of the rollup.
func BenchmarkSketch(b *testing.B) {
	hashes := make([]uint64, 1<<20)
	for i := range hashes {
		hashes[i] = xxhash.Sum64String("u" + strconv.Itoa(i))
	}
	filled := func(users int) *hyperloglog.Sketch {
		sk := NewSketch()
		for _, h := range hashes[:users] {
			sk.InsertHash(h)
		}
		return sk
	}
	b.Run("insert/sparse", func(b *testing.B) {
		// A day's sketch of a typical app: up to 1000 users, all new.
		b.ReportAllocs()
		var sk *hyperloglog.Sketch
		i := 0
		for b.Loop() {
			if i%1000 == 0 {
				sk = NewSketch()
			}
			sk.InsertHash(hashes[i&(1<<20-1)])
			i++
		}
	})
	b.Run("insert/dense", func(b *testing.B) {
		sk := filled(200000)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sk.InsertHash(hashes[i&(1<<20-1)])
			i++
		}
	})
	b.Run("reinsert/sparse", func(b *testing.B) {
		// What Apply avoids with the day's user set.
		sk := filled(500)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sk.InsertHash(hashes[i%500])
			i++
		}
	})
	for _, users := range []int{100, 10000, 200000} {
		src := filled(users)
		name := strconv.Itoa(users)
		b.Run("merge/"+name, func(b *testing.B) {
			dst := filled(users / 2)
			b.ReportAllocs()
			for b.Loop() {
				if err := dst.Merge(src); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("marshal/"+name, func(b *testing.B) {
			b.ReportAllocs()
			var blob []byte
			for b.Loop() {
				blob, _ = src.MarshalBinary()
			}
			b.ReportMetric(float64(len(blob)), "bytes")
		})
		b.Run("unmarshal/"+name, func(b *testing.B) {
			blob, _ := src.MarshalBinary()
			b.ReportAllocs()
			for b.Loop() {
				var sk hyperloglog.Sketch
				if err := sk.UnmarshalBinary(blob); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUserSet measures the cache of users already written, which keeps
// repeated logins out of user_days and the sketch.
func BenchmarkUserSet(b *testing.B) {
	keys := make([]xxh3.Uint128, 4096)
	for i := range keys {
		keys[i] = userKey(1400000001, 20000, "u"+strconv.Itoa(i))
	}
	c := newUserCache(userCacheBuckets)
	defer c.mem.free()
	for _, k := range keys {
		c.Seen(k)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !c.Seen(keys[i&4095]) {
			b.Fatal("missing user")
		}
		i++
	}
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStateMemory folds the stream into one partition state and
// reports the memory it holds once the rows are flushed: the id set per id
// (outside the Go heap), and the days (counters and sketches) per user-day.
// The user cache is a fixed 16 MiB per partition on top.
func BenchmarkStateMemory(b *testing.B) {
	st := benchStream()
	b.ReportAllocs()
	var ids, userDays int
	var idBytes, dayBytes float64
	for b.Loop() {
		base := liveHeap()
		s := benchState()
		for i := range st.len() {
			if _, err := s.Apply(int64(i), st.key(i), st.event(i)); err != nil {
				b.Fatal(err)
			}
		}
		ids, userDays = s.ids.Len(), len(s.pendingUsers)
		s.pendingUsers, s.pendingIDs, s.pendingPlans = nil, nil, nil
		idBytes, dayBytes = float64(s.ids.Bytes()), float64(liveHeap()-base)
		runtime.KeepAlive(s)
		s.free()
	}
	b.ReportMetric(idBytes/float64(ids), "bytes/id")
	b.ReportMetric(dayBytes/float64(userDays), "bytes/user-day")
	b.ReportMetric(float64(userDays), "user-days")
}

// liveHeap returns the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkFilterMemory fills one day's filter of one partition at 12 and
// 16 bits per id (DEDUP_FILTER_BITS) with as many ids as a partition of
// `immeter bench` gets at 30M and 100M events (4 partitions, one day):
// bytes/id is the memory per id at each size, growth-bytes/id the memory
// per id added between the two, false-hits/id the share of new ids the full
// filter sends to event_ids.
func BenchmarkFilterMemory(b *testing.B) {
	sizes := []int{30_000_000 / 4, 100_000_000 / 4}
	for _, bits := range []float64{12, 16} {
		b.Run("bits="+strconv.Itoa(int(bits)), func(b *testing.B) {
			var bytes [2]int
			const probes = 1_000_000
			hits := 0
			for b.Loop() {
				f := newIDFilter(bits)
				r := uint64(1)
				n := 0
				for i, size := range sizes {
					for ; n < size; n++ {
						r = r*6364136223846793005 + 1442695040888963407
						f.Add(xxh3.Uint128{Hi: r, Lo: r * 0x9e3779b97f4a7c15}, 20000)
					}
					bytes[i] = f.Bytes()
				}
				hits = 0
				for i := range uint64(probes) {
					if f.MayContain(xxh3.Uint128{Hi: (i + 1) * 0xc2b2ae3d27d4eb4f, Lo: i * 0x165667b19e3779f9}) {
						hits++
					}
				}
				f.free()
			}
			b.ReportMetric(float64(hits)/probes, "false-hits/id@25M")
			b.ReportMetric(float64(bytes[0])/float64(sizes[0]), "bytes/id@7.5M")
			b.ReportMetric(float64(bytes[1])/float64(sizes[1]), "bytes/id@25M")
			b.ReportMetric(float64(bytes[1]-bytes[0])/float64(sizes[1]-sizes[0]), "growth-bytes/id")
		})
	}
}

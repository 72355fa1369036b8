package aggregate

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// BenchmarkFlush writes what folding n events leaves pending (event ids,
// user days, sketches, counters, the offset) to a private database of the
// real ClickHouse server. It needs CLICKHOUSE_ADDR; without it it skips.
func BenchmarkFlush(b *testing.B) {
	addr := testenv.ClickHouse(b)
	cfg := schemas.ClickHouseConfig{Addr: addr, Database: "bench_flush_" + testenv.Suffix(), Username: "default"}
	ctx := context.Background()
	conn, err := schemas.OpenClickHouse(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database)
		conn.Close()
	}()
	st := &store{conn: conn, group: "bench", topic: "bench.events", writer: "bench", inserts: make(chan struct{}, maxSetInserts)}
	stream := benchStream()
	// Each flush is of a partition of its own: a partition's stored
	// position belongs to the state that wrote it (the store refuses a
	// second writer), here across the sizes too.
	next := 0
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n)+"events", func(b *testing.B) {
			b.ReportAllocs()
			var rows int
			for b.Loop() {
				b.StopTimer()
				s := benchState()
				s.partition = int32(next)
				for i := range n {
					j := (next*n + i) % stream.len()
					if _, err := s.Apply(int64(j), stream.key(j), stream.event(j)); err != nil {
						b.Fatal(err)
					}
				}
				next++
				rows = s.pending()
				for _, d := range s.days {
					if d.dirty {
						rows++
					}
				}
				b.StartTimer()
				if err := st.flush(ctx, s, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows), "rows/op")
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

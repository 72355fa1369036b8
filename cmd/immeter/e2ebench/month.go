package e2ebench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// monthFigures is the close of a whole synthetic month.
type monthFigures struct {
	apps, users     int
	userDays        int64
	dailyRows       int64
	sketchRows      int64
	fill            time.Duration
	readMonth       time.Duration // rollup.ReadMonth alone
	publish         time.Duration // rollup.Publish ForceFinal: read, price, store, publish
	final, mauTotal int
}

// syntheticMonth writes a month of rollups as the aggregator would have
// left them, into the month before the current one: every app active every
// day (one daily_usage row per day), each of users users belonging to one
// app (pools Zipf-weighted like the load's) and active on about three days
// of the month (user_days rows and the day's sketches), then closes it.
func (e *env) syntheticMonth(ctx context.Context, apps, users int) (*monthFigures, error) {
	f := &monthFigures{apps: apps, users: users}
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	m := schemas.MonthOf(time.Now(), loc).Prev()
	first, days := m.FirstDay(), m.Days()
	const firstApp = 1400000001
	// Users [start[a], start[a+1]) belong to app a.
	start := make([]int, apps+1)
	var total float64
	for i := range apps {
		total += math.Pow(1+float64(i), -1.1)
	}
	spare := float64(users - apps)
	for i := range apps {
		start[i+1] = start[i] + 1 + int(spare*math.Pow(1+float64(i), -1.1)/total)
	}
	users = start[apps]
	f.users = users
	t0 := time.Now()
	parts := int32(e.cfg.Partitions)
	// Counters: one row per app, day and the app's partition.
	{
		b, err := e.conn.PrepareBatch(ctx, sqlInsertDailyUsage)
		if err != nil {
			return nil, err
		}
		now := time.Now().UTC().Truncate(time.Second)
		for a := range apps {
			n := uint64(start[a+1] - start[a])
			for d := range days {
				day := (first + schemas.Day(d)).Date()
				if err := b.Append(uint32(firstApp+a), day, int32(a)%parts, uint64(d+1), n, 5*n, 4*n, n/2, n/2,
					uint64(d%3), uint64(d%2), n/10, n/20, 60*n, 30*n, uint64(0), now); err != nil {
					return nil, err
				}
				f.dailyRows++
			}
		}
		if err := b.Send(); err != nil {
			return nil, fmt.Errorf("daily_usage: %w", err)
		}
	}
	// Users and sketches, a day at a time.
	for d := range days {
		day := (first + schemas.Day(d)).Date()
		var appCol []uint32
		var dayCol []time.Time
		var userCol []string
		sketches := map[int]*hyperloglog.Sketch{}
		for a := range apps {
			for u := start[a]; u < start[a+1]; u++ {
				h := mix(uint64(u))
				if int(h%uint64(days)) != d && mix(h^uint64(d+1))%15 != 0 {
					continue
				}
				name := "u" + strconv.Itoa(u)
				appCol = append(appCol, uint32(firstApp+a))
				dayCol = append(dayCol, day)
				userCol = append(userCol, name)
				sk := sketches[a]
				if sk == nil {
					sk = aggregate.NewSketch()
					sketches[a] = sk
				}
				sk.InsertHash(xxhash.Sum64String(name))
			}
			if len(appCol) >= 1_000_000 || a == apps-1 {
				b, err := e.conn.PrepareBatch(ctx, sqlInsertUserDays)
				if err != nil {
					return nil, err
				}
				if err := appendAll(b, appCol, dayCol, userCol); err != nil {
					return nil, fmt.Errorf("user_days: %w", err)
				}
				f.userDays += int64(len(appCol))
				appCol, dayCol, userCol = appCol[:0], dayCol[:0], userCol[:0]
			}
		}
		b, err := e.conn.PrepareBatch(ctx, sqlInsertSketches)
		if err != nil {
			return nil, err
		}
		for a, sk := range sketches {
			blob, err := sk.MarshalBinary()
			if err != nil {
				return nil, err
			}
			if err := b.Append(uint32(firstApp+a), day, "synthetic/p"+strconv.Itoa(a%int(parts)), uint64(d+1), string(blob)); err != nil {
				return nil, err
			}
			f.sketchRows++
		}
		if err := b.Send(); err != nil {
			return nil, fmt.Errorf("user_sketches: %w", err)
		}
		e.log.Info("bench: synthetic month", "day", d+1, "of", days, "user_days", f.userDays)
	}
	f.fill = time.Since(t0)
	if err := e.conn.Exec(ctx, fmt.Sprintf(sqlOptimizeFinal, "user_days")); err != nil {
		return nil, err
	}

	t0 = time.Now()
	usage, err := rollup.ReadMonth(ctx, e.conn, m, loc)
	if err != nil {
		return nil, err
	}
	f.readMonth = time.Since(t0)
	for _, u := range usage {
		f.mauTotal += int(u.Usage.MAU)
	}
	rcfg := rollup.DefaultConfig()
	rcfg.Brokers, rcfg.Topic, rcfg.Location, rcfg.Logger = e.cfg.Brokers, e.billing, loc, e.log
	r, err := rollup.New(rcfg, e.conn)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	t0 = time.Now()
	res, err := r.Publish(ctx, m, rollup.ForceFinal)
	if err != nil {
		return nil, err
	}
	f.publish, f.final = time.Since(t0), res.Final
	return f, nil
}

func appendAll(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return err
		}
	}
	return b.Send()
}

// mix is SplitMix64's finalizer.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

package e2ebench

import (
	"context"
	"time"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// closeFigures is the final rollup of the month the load fell in.
type closeFigures struct {
	apps    int
	final   int
	elapsed time.Duration
}

// monthClose publishes the final records of the current month, which has
// not ended, as `immeter rollup --month M --final --allow-open-month` does,
// and times it.
func (e *env) monthClose(ctx context.Context) (*closeFigures, error) {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	rcfg := rollup.DefaultConfig()
	rcfg.Brokers, rcfg.Topic, rcfg.Location, rcfg.Logger = e.cfg.Brokers, e.billing, loc, e.log
	r, err := rollup.New(rcfg, e.conn)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	m := schemas.MonthOf(time.Now(), loc)
	start := time.Now()
	res, err := r.Publish(ctx, m, rollup.ForceFinalOpen)
	if err != nil {
		return nil, err
	}
	return &closeFigures{
		apps:    res.Final + res.Correction + res.Unchanged + res.Provisional,
		final:   res.Final,
		elapsed: time.Since(start),
	}, nil
}

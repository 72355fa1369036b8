package aggregate

import (
	"context"
	"fmt"
	"time"
)

// liveGroupType is the group type of live-streaming groups, whose number
// each edition limits: their creations and dissolutions are kept as a set
// in live_group_changes for the alerter.
const liveGroupType = "AVChatRoom"

const sqlInsertLiveGroupChange = `INSERT INTO live_group_changes (app, group_id, op, at, at_nanos, id)`

func (st *store) flushLive(ctx context.Context, b *flushBatch) error {
	if len(b.live) == 0 || b.written&(1<<setLive) != 0 {
		return nil
	}
	batch, err := st.conn.PrepareBatch(ctx, sqlInsertLiveGroupChange)
	if err != nil {
		return fmt.Errorf("write live_group_changes: %w", err)
	}
	for _, e := range b.live {
		at := e.Time.UTC()
		if err := batch.Append(e.App, e.Group, e.Op, at.Truncate(time.Second), uint32(at.Nanosecond()), e.ID); err != nil {
			return fmt.Errorf("write live_group_changes: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("write live_group_changes: %w", err)
	}
	return nil
}

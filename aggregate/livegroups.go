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

func (st *store) flushLive(ctx context.Context, s *partitionState) error {
	if len(s.pendingLive) == 0 {
		return nil
	}
	b, err := st.conn.PrepareBatch(ctx, sqlInsertLiveGroupChange)
	if err != nil {
		return fmt.Errorf("write live_group_changes: %w", err)
	}
	for _, e := range s.pendingLive {
		at := e.Time.UTC()
		if err := b.Append(e.App, e.Group, e.Op, at.Truncate(time.Second), uint32(at.Nanosecond()), e.ID); err != nil {
			return fmt.Errorf("write live_group_changes: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write live_group_changes: %w", err)
	}
	s.pendingLive = s.pendingLive[:0]
	return nil
}

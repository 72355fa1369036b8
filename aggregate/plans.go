package aggregate

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

// sqlLoadPlans reads every stored plan change, to tell a plan event read
// again from one that reuses an id with other content.
const sqlLoadPlans = `SELECT app, id, at, at_nanos, edition FROM plan_changes ORDER BY app, id, at, at_nanos, edition`

// planContent is the hash of what a plan change says: its instant and
// edition. Two plan events of an app with one id and another content are
// not the same event; plan_changes keys rows by (app, at, at_nanos, id), so
// both would be stored, and a merge could later keep either: the bill would
// depend on when ClickHouse merged.
func planContent(at time.Time, edition string) uint64 {
	var buf [8 + 64]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(at.UnixNano()))
	n := copy(buf[8:], edition)
	return xxh3.Hash(buf[:8+n])
}

// checkPlan returns "" when the plan event e may be written: its id is new
// to the app, or it is the same change again (a replay or a resend, which
// plan_changes, a set, stores once). Otherwise it returns why it is
// refused: the first change with that id stands.
func (s *partitionState) checkPlan(e *schemas.Event) string {
	h := idHash(e.App, e.ID)
	c := planContent(e.Time, e.Edition)
	if old, ok := s.plans[h]; ok && old != c {
		return "id: already used by another plan change of this app (other edition or time); the first one stands"
	}
	s.plans[h] = c
	return ""
}

// loadPlans reads the plan changes stored so far into s.plans. They are
// few (a change of edition per app now and then): ~40 bytes each in memory
// per partition owned.
func (st *store) loadPlans(ctx context.Context, s *partitionState) error {
	rows, err := st.conn.Query(ctx, sqlLoadPlans)
	if err != nil {
		return fmt.Errorf("load plan_changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var app, nanos uint32
		var id, edition string
		var at time.Time
		if err := rows.Scan(&app, &id, &at, &nanos, &edition); err != nil {
			return fmt.Errorf("load plan_changes: %w", err)
		}
		s.plans[idHash(app, id)] = planContent(at.Add(time.Duration(nanos)), edition)
	}
	return rows.Err()
}

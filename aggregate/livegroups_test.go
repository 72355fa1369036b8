package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestApplyKeepsLiveGroupChanges: creations and dissolutions of AVChatRoom
// groups go to the live-group set, also when read again (a set takes them
// twice harmlessly), but not those of other group types or duplicates.
func TestApplyKeepsLiveGroupChanges(t *testing.T) {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, loc)
	today := schemas.DayOf(now, loc)
	const app = 1400000001
	key := []byte(fmt.Sprint(app))
	group := func(id, op, g, typ string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":"group","app":%d,"time":%q,"op":%q,"group":%q,"group_type":%q}`,
			id, app, now.Format(time.RFC3339), op, g, typ)
	}
	s := newPartitionState(0, loc)
	defer s.free()
	s.minDay = today - 62
	// Today's row is stored up to offset 2: offsets 0 and 1 are replays.
	s.days[dayKey{app, today}] = &dayState{version: 2}
	for i, m := range []struct {
		value []byte
		want  Outcome
	}{
		{group("a", "create", "live-1", "AVChatRoom"), Replayed},
		{group("b", "create", "work-1", "Work"), Replayed},
		{group("c", "create", "live-2", "AVChatRoom"), Counted},
		{group("c", "create", "live-2", "AVChatRoom"), Duplicate},
		{group("d", "dissolve", "live-1", "AVChatRoom"), Counted},
	} {
		got, err := s.Apply(int64(i), key, m.value)
		if err != nil || got != m.want {
			t.Fatalf("offset %d: unexpected outcome; got %d (%v); want %d", i, got, err, m.want)
		}
	}
	var got []string
	for _, e := range s.pendingLive {
		got = append(got, e.Op+" "+e.Group)
	}
	want := []string{"create live-1", "create live-2", "dissolve live-1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("unexpected live-group changes; got %v; want %v", got, want)
	}
	if n := s.pending(); n != 3+4 { // 3 live-group changes, 4 ids
		t.Fatalf("unexpected pending rows; got %d; want 7", n)
	}
}

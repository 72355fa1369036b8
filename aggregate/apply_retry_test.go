package aggregate

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestApplyAfterFailedLoadCounts applies a late event whose day must be
// loaded from ClickHouse while the load fails, then again as the
// aggregator's apply does: the retry counts it (it was counted as a
// duplicate of itself once, losing its usage; TestFaultClickHouseRestart
// caught it with seed 1796061486632655141).
func TestApplyAfterFailedLoadCounts(t *testing.T) {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	s := newPartitionState(0, loc)
	today := schemas.DayFromDate(2026, 11, 25)
	s.minDay, s.loadedFrom = today-62, today-2
	down := true
	s.load = func(dayKey) (Counters, uint64, error) {
		if down {
			return Counters{}, 0, errors.New("load daily_usage: connection refused")
		}
		return Counters{CallSecondsAudio: 100, CallsAudio: 1}, 5, nil
	}
	e := schemas.Event{ID: "late-call", Type: schemas.Call, App: 1400000006, User: "u1", Media: "audio", Seconds: 700,
		Time: (today - 10).Date().Add(12 * time.Hour)}
	value, _ := json.Marshal(e)
	if _, err := s.Apply(10, []byte("1400000006"), value); err == nil {
		t.Fatal("unexpected Apply with the load failing; got nil error; want the load's error")
	}
	down = false
	out, err := s.Apply(10, []byte("1400000006"), value)
	if err != nil || out != Counted {
		t.Fatalf("unexpected Apply after the load recovered; got %v, %v; want counted", out, err)
	}
	st := s.days[dayKey{e.App, schemas.DayOf(e.Time, loc)}]
	if st.c.CallSecondsAudio != 800 || st.c.CallsAudio != 2 || st.c.Duplicates != 0 {
		t.Fatalf("unexpected counters; got %+v; want 800 audio seconds in 2 calls, no duplicate", st.c)
	}
	if len(s.pendingIDs) != 1 {
		t.Fatalf("unexpected pending ids; got %d; want 1", len(s.pendingIDs))
	}
}

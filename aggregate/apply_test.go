package aggregate

import (
	"errors"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// A late event whose day must be loaded while ClickHouse is away fails, and
// the aggregator applies it again (Aggregator.apply): it must then be
// counted, not taken for a duplicate of itself. The cluster fault test
// caught this (a replica stopped mid-stream).
func TestApplyAgainAfterFailedDayLoad(t *testing.T) {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	s := newPartitionState(0, loc)
	defer s.free()
	today := schemas.DayFromDate(2026, 11, 25)
	s.minDay, s.loadedFrom = today-60, today-1
	fail := true
	s.load = func(dayKey) (Counters, uint64, error) {
		if fail {
			fail = false
			return Counters{}, 0, errors.New("clickhouse away")
		}
		return Counters{MessagesLive: 10}, 5, nil
	}
	value := []byte(`{"id":"m1","type":"message","app":1400000001,"time":"2026-11-10T12:00:00+08:00","user":"u","channel":"live","count":3}`)
	if _, err := s.Apply(100, []byte("1400000001"), value); err == nil {
		t.Fatal("Apply with a failing day load: no error")
	}
	out, err := s.Apply(100, []byte("1400000001"), value)
	if err != nil {
		t.Fatal(err)
	}
	if out != Counted {
		t.Fatalf("unexpected outcome of the second Apply; got %v; want Counted (%v)", out, Counted)
	}
	st := s.days[dayKey{app: 1400000001, day: schemas.DayFromDate(2026, 11, 10)}]
	if st == nil || st.c.MessagesLive != 13 || st.c.Duplicates != 0 {
		t.Fatalf("unexpected day state %+v; want 13 live messages, no duplicates", st)
	}
}

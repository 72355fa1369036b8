package aggregate

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestPlanEventsAnyAge applies events older than the accepted window: a plan
// event is state and is kept at any age (for plan_changes), without a day
// row or an id; a login that old goes to the DLQ.
func TestPlanEventsAnyAge(t *testing.T) {
	loc, _ := schemas.ParseTimezone("+08:00")
	s := newPartitionState(0, loc)
	defer s.free()
	now := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	s.minDay = schemas.DayOf(now.Add(-1488*time.Hour), loc)
	s.loadedFrom = s.minDay
	s.maxTime = now.Add(10 * time.Minute)
	s.load = func(k dayKey) (Counters, uint64, error) {
		t.Fatalf("a plan event loaded day %s of app %d", k.day, k.app)
		return Counters{}, 0, nil
	}
	apply := func(off int64, e schemas.Event) Outcome {
		t.Helper()
		b, _ := json.Marshal(e)
		o, err := s.Apply(off, []byte("7"), b)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	yearAgo := time.Date(2025, 10, 1, 0, 0, 0, 0, loc)
	if o := apply(0, schemas.Event{ID: "p1", Type: schemas.Plan, App: 7, Time: yearAgo, Edition: "standard"}); o != Counted {
		t.Fatalf("plan event a year old: got outcome %d, DLQ %+v; want it kept", o, s.pendingDLQ)
	}
	// The same event read again (a replay) is written again: plan_changes is a set.
	apply(0, schemas.Event{ID: "p1", Type: schemas.Plan, App: 7, Time: yearAgo, Edition: "standard"})
	if o := apply(1, schemas.Event{ID: "l1", Type: schemas.Login, App: 7, Time: yearAgo, User: "u"}); o != Rejected {
		t.Fatalf("login a year old: got outcome %d; want Rejected", o)
	}
	if o := apply(2, schemas.Event{ID: "p2", Type: schemas.Plan, App: 7, Time: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), Edition: "premium"}); o != Rejected {
		t.Fatalf("plan event before 1970: got outcome %d; want Rejected", o)
	}
	if o := apply(3, schemas.Event{ID: "p3", Type: schemas.Plan, App: 7, Time: now.Add(time.Hour), Edition: "premium"}); o != Rejected {
		t.Fatalf("plan event an hour ahead: got outcome %d; want Rejected", o)
	}
	if len(s.pendingPlans) != 2 || s.pendingPlans[0].Edition != "standard" || !s.pendingPlans[0].Time.Equal(yearAgo) {
		t.Fatalf("unexpected plan changes to write: %+v", s.pendingPlans)
	}
	if len(s.pendingDLQ) != 3 || len(s.days) != 0 || s.ids.Len() != 0 || len(s.pendingIDs) != 0 {
		t.Fatalf("unexpected state: %d dead letters, %d days, %d ids", len(s.pendingDLQ), len(s.days), s.ids.Len())
	}
}

// TestPlanIDReused: a plan event whose id the app already used for another
// change (other edition or time), stored before or pending, goes to the DLQ
// and the first change stands; the same change again is kept (a replay).
func TestPlanIDReused(t *testing.T) {
	loc, _ := schemas.ParseTimezone("+08:00")
	s := newPartitionState(0, loc)
	defer s.free()
	now := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	s.minDay = schemas.DayOf(now.Add(-1488*time.Hour), loc)
	s.maxTime = now.Add(10 * time.Minute)
	stored := time.Date(2026, 9, 1, 0, 0, 0, 5, loc)
	s.plans[idHash(7, "old")] = planContent(stored, "standard") // as loadPlans leaves it
	apply := func(off int64, e schemas.Event) Outcome {
		t.Helper()
		e.Type, e.App = schemas.Plan, 7
		b, _ := json.Marshal(e)
		o, err := s.Apply(off, []byte("7"), b)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	at := time.Date(2026, 10, 2, 0, 0, 0, 0, loc)
	for _, c := range []struct {
		off  int64
		e    schemas.Event
		want Outcome
	}{
		{0, schemas.Event{ID: "p1", Time: at, Edition: "standard"}, Counted},
		{1, schemas.Event{ID: "p1", Time: at, Edition: "standard"}, Counted},                   // resent: the same change
		{2, schemas.Event{ID: "p1", Time: at, Edition: "premium"}, Rejected},                   // other edition
		{3, schemas.Event{ID: "p1", Time: at.Add(time.Second), Edition: "standard"}, Rejected}, // other time
		{4, schemas.Event{ID: "old", Time: stored, Edition: "standard"}, Counted},              // stored before, read again
		{5, schemas.Event{ID: "old", Time: stored, Edition: "developer"}, Rejected},            // stored before, other edition
		{6, schemas.Event{ID: "p2", Time: at, Edition: "premium"}, Counted},
	} {
		if o := apply(c.off, c.e); o != c.want {
			t.Errorf("offset %d %+v: got outcome %d; want %d", c.off, c.e, o, c.want)
		}
	}
	if len(s.pendingPlans) != 4 {
		t.Errorf("got %d plan changes to write; want 4: %+v", len(s.pendingPlans), s.pendingPlans)
	}
	for _, p := range s.pendingPlans {
		if p.ID == "p1" && p.Edition != "standard" || p.ID == "old" && p.Edition != "standard" {
			t.Errorf("a reused id's other content is to be written: %+v", p)
		}
	}
	if len(s.pendingDLQ) != 3 {
		t.Fatalf("got %d dead letters; want 3: %+v", len(s.pendingDLQ), s.pendingDLQ)
	}
	for _, d := range s.pendingDLQ {
		if !strings.Contains(d.reason, "already used by another plan change") {
			t.Errorf("dead letter at %d: reason %q", d.offset, d.reason)
		}
	}
}

package truth

import (
	"strconv"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestTotals folds a small stream: a repeated (app, id) counts once, MAU is
// the distinct users of the month in the billing time zone, minutes round
// up, and the largest daily net group increase is at least 0 unless every
// day of the month has events.
func TestTotals(t *testing.T) {
	loc := time.FixedZone("+08:00", 8*3600)
	at := func(day, hour int) time.Time { return time.Date(2026, 2, day, hour, 0, 0, 0, loc) }
	feb := schemas.Month{Year: 2026, Month: time.February}
	s := New(loc)
	add := func(e schemas.Event) { e.App = 1400000001; s.Add(e) }
	add(schemas.Event{ID: "1", Type: schemas.Login, User: "a", Time: at(1, 9)})
	add(schemas.Event{ID: "1", Type: schemas.Login, User: "b", Time: at(1, 9)}) // a repeat: not counted
	add(schemas.Event{ID: "2", Type: schemas.Login, User: "a", Time: at(2, 9)})
	add(schemas.Event{ID: "3", Type: schemas.Call, User: "a", Media: "audio", Seconds: 61, Time: at(2, 10)})
	add(schemas.Event{ID: "4", Type: schemas.Group, Op: "dissolve", Group: "g", GroupType: "Work", Time: at(3, 10)})
	add(schemas.Event{ID: "5", Type: schemas.Message, User: "a", Channel: "group", Count: 3, Time: time.Date(2026, 1, 31, 16, 30, 0, 0, time.UTC)}) // Feb 1 in +08:00
	s.Finish()
	u := s.Months[feb][1400000001].Usage
	if s.Distinct != 5 || s.Duplicates != 1 || u.Logins != 2 || u.MAU != 1 || u.CallMinutes.Audio != 2 || u.Messages.Group != 3 ||
		u.GroupsDissolved != 1 || u.MaxDailyNetGroups != 0 {
		t.Fatalf("unexpected totals: distinct %d duplicates %d usage %+v", s.Distinct, s.Duplicates, u)
	}
	// A group dissolved on every day of February: the largest net is -1.
	s = New(loc)
	for d := 1; d <= 28; d++ {
		add(schemas.Event{ID: "d" + strconv.Itoa(d), Type: schemas.Group, Op: "dissolve", Group: "g", GroupType: "Work", Time: at(d, 12)})
	}
	s.Finish()
	if got := s.Months[feb][1400000001].Usage.MaxDailyNetGroups; got != -1 {
		t.Fatalf("unexpected max daily net groups over a month of dissolutions; got %d; want -1", got)
	}
}

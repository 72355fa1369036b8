// Package truth computes what a stream of events must add up to per month and app, independently of the pipeline: the ground truth the tests compare the pipeline's totals with.
package truth

import (
	"fmt"
	"time"

	"github.com/immeter/immeter/schemas"
)

// App is the expected usage of one app's month.
type App struct {
	Usage    schemas.Usage
	Users    map[string]bool                 // users who logged in
	DayUsers map[schemas.Day]map[string]bool // users who logged in, by day
	Net      map[schemas.Day]int64           // groups created less dissolved, by day
	// PeakNet is the highest Net of each day at any point of the stream
	// as folded: a reader of a prefix of it (a flush) may have seen that.
	PeakNet map[schemas.Day]int64
	Days    map[schemas.Day]bool // days with counted events
}

// Totals folds events, the first of each (app, id) only, into the usage of
// their app's month in the billing time zone.
type Totals struct {
	Months map[schemas.Month]map[uint32]*App
	// Distinct (app, id) counted, and the repeats passed over.
	Distinct, Duplicates int

	loc  *time.Location
	seen map[string]bool
}

// New returns empty totals for the billing time zone loc.
func New(loc *time.Location) *Totals {
	return &Totals{Months: map[schemas.Month]map[uint32]*App{}, loc: loc, seen: map[string]bool{}}
}

// App returns the expected usage of app in month m, made empty if none.
func (s *Totals) App(app uint32, m schemas.Month) *App {
	if s.Months[m] == nil {
		s.Months[m] = map[uint32]*App{}
	}
	a := s.Months[m][app]
	if a == nil {
		a = &App{Users: map[string]bool{}, DayUsers: map[schemas.Day]map[string]bool{},
			Net: map[schemas.Day]int64{}, PeakNet: map[schemas.Day]int64{}, Days: map[schemas.Day]bool{}}
		s.Months[m][app] = a
	}
	return a
}

// Add folds e into the totals unless its (app, id) was added before, and
// reports whether it counted. Call Finish before reading the monthly figures.
func (s *Totals) Add(e schemas.Event) bool {
	key := fmt.Sprint(e.App, "/", e.ID)
	if s.seen[key] {
		s.Duplicates++
		return false
	}
	s.seen[key] = true
	s.Distinct++
	day := schemas.DayOf(e.Time, s.loc)
	a := s.App(e.App, day.Month())
	a.Days[day] = true
	u := &a.Usage
	switch e.Type {
	case schemas.Login:
		u.Logins++
		a.Users[e.User] = true
		if a.DayUsers[day] == nil {
			a.DayUsers[day] = map[string]bool{}
		}
		a.DayUsers[day][e.User] = true
	case schemas.Message:
		n := uint64(e.Count)
		switch e.Channel {
		case "c2c":
			u.Messages.C2C += n
		case "group":
			u.Messages.Group += n
		case "community":
			u.Messages.Community += n
		case "live":
			u.Messages.Live += n
		}
	case schemas.Group:
		if e.Op == "create" {
			u.GroupsCreated++
			a.Net[day]++
			a.PeakNet[day] = max(a.PeakNet[day], a.Net[day])
		} else {
			u.GroupsDissolved++
			a.Net[day]--
		}
	case schemas.Call:
		if e.Media == "audio" {
			u.CallSeconds.Audio += uint64(e.Seconds)
		} else {
			u.CallSeconds.Video += uint64(e.Seconds)
		}
	}
	return true
}

// Finish derives the monthly figures the way the price list defines them:
// MAU, call minutes rounded up, and the largest daily net group increase
// (a day without events nets 0).
func (s *Totals) Finish() {
	for m, apps := range s.Months {
		for _, a := range apps {
			u := &a.Usage
			u.MAU = uint64(len(a.Users))
			u.CallMinutes.Audio = (u.CallSeconds.Audio + 59) / 60
			u.CallMinutes.Video = (u.CallSeconds.Video + 59) / 60
			first := true
			for d := range a.Days {
				if first || a.Net[d] > u.MaxDailyNetGroups {
					u.MaxDailyNetGroups = a.Net[d]
				}
				first = false
			}
			if len(a.Days) < m.Days() {
				u.MaxDailyNetGroups = max(u.MaxDailyNetGroups, 0)
			}
		}
	}
}

package schemas

import (
	"strings"
	"testing"
	"time"
)

func TestParseTimezone(t *testing.T) {
	for _, c := range []struct {
		in   string
		name string // TimezoneName of the result; "" for an error
		off  int    // offset in seconds at 2026-01-01
	}{
		{"+08:00", "+08:00", 8 * 3600},
		{"-05:30", "-05:30", -(5*3600 + 30*60)},
		{"+14:00", "+14:00", 14 * 3600},
		{"-14:00", "-14:00", -14 * 3600},
		{"+00:00", "+00:00", 0},
		{"UTC", "+00:00", 0},
		{"Z", "+00:00", 0},
		{"Asia/Shanghai", "Asia/Shanghai", 8 * 3600},
		{"America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires", -3 * 3600},
		{"Etc/GMT-14", "Etc/GMT-14", 14 * 3600},
		{"", "", 0},
		{"Local", "", 0},
		{"+-8:00", "", 0},
		{"-+1:00", "", 0},
		{"+14:59", "", 0},
		{"+14:01", "", 0},
		{"-15:00", "", 0},
		{"+08:60", "", 0},
		{"+8:00", "", 0},
		{"+08:00:00", "", 0},
		{"+08", "", 0},
		{"+0８:00", "", 0},
		{"Mars/Olympus", "", 0},
		{"../etc/passwd", "", 0},
	} {
		loc, err := ParseTimezone(c.in)
		if c.name == "" {
			if err == nil {
				t.Errorf("ParseTimezone(%q): got %v; want an error", c.in, loc)
			} else if !strings.Contains(err.Error(), `"`+c.in+`"`) {
				t.Errorf("ParseTimezone(%q): error %q does not quote the value", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTimezone(%q): %v", c.in, err)
			continue
		}
		_, off := time.Date(2026, 1, 1, 0, 0, 0, 0, loc).Zone()
		if got := TimezoneName(loc); got != c.name || off != c.off {
			t.Errorf("ParseTimezone(%q): got %s at offset %d; want %s at %d", c.in, got, off, c.name, c.off)
		}
	}
}

// TestDayStartDST checks every day boundary from 2000 to 2030 against DayOf
// in zones where changes of offset skip or repeat local midnight: Start is
// the first instant DayOf puts in the day, and months start and end there.
func TestDayStartDST(t *testing.T) {
	for _, z := range []string{"America/Havana", "America/Santiago", "Atlantic/Azores", "Asia/Amman",
		"America/Asuncion", "Asia/Beirut", "Asia/Gaza", "Asia/Shanghai", "+08:00", "-05:30"} {
		loc, err := ParseTimezone(z)
		if err != nil {
			t.Fatal(err)
		}
		wrong := 0
		for d := DayFromDate(2000, 1, 1); d < DayFromDate(2031, 1, 1); d++ {
			s := d.Start(loc)
			if DayOf(s, loc) != d || DayOf(s.Add(-time.Nanosecond), loc) != d-1 {
				if wrong++; wrong <= 3 {
					t.Errorf("%s: day %s starts at %v (day %s), before it day %s", z, d, s, DayOf(s, loc), DayOf(s.Add(-time.Nanosecond), loc))
				}
			}
		}
		for m := (Month{2000, time.January}); m.Year <= 2030; m = m.Next() {
			if s, e := m.Start(loc), m.End(loc); !s.Equal(m.FirstDay().Start(loc)) || !e.Equal(m.Next().FirstDay().Start(loc)) {
				t.Errorf("%s: month %s spans %v to %v", z, m, s, e)
			}
		}
	}
	// Havana skipped midnight on 2012-04-01: March ends at 01:00 CDT, which
	// is 05:00 UTC, not at 23:00 CST on March 31.
	havana, _ := ParseTimezone("America/Havana")
	if got, want := (Month{2012, time.March}).End(havana), time.Date(2012, 4, 1, 5, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Havana March 2012 ends at %v; want %v", got.UTC(), want)
	}
}

// TestDaysMatchesDayOf checks the cached offsets of Days against DayOf, at
// every day start and its last nanosecond (where a stale offset shows) and
// at times out of order.
func TestDaysMatchesDayOf(t *testing.T) {
	for _, z := range []string{"America/Havana", "Australia/Lord_Howe", "Europe/London", "Asia/Gaza", "UTC", "+08:00", "-05:30"} {
		loc, err := ParseTimezone(z)
		if err != nil {
			t.Fatal(err)
		}
		days := NewDays(loc)
		f := func(at time.Time) {
			t.Helper()
			if got, want := days.Of(at), DayOf(at, loc); got != want {
				t.Fatalf("%s: unexpected day of %v; got %s; want %s", z, at, got, want)
			}
		}
		for d := DayFromDate(2000, 1, 1); d < DayFromDate(2031, 1, 1); d++ {
			s := d.Start(loc)
			f(s)
			f(s.Add(-time.Nanosecond))
			f(s.Add(-time.Second))
			f(s.Add(12 * time.Hour))
		}
		for i := range 20000 {
			f(time.Unix(int64(i)*7919*3607%(4e9)-1e9, int64(i)))
		}
		f(time.Time{})
		f(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))
	}
}

package schemas

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// DefaultTimezone is the billing time zone of the provider: Beijing time.
const DefaultTimezone = "+08:00"

// ParseTimezone reads a billing time zone: a fixed offset such as +08:00 or
// -05:30 (at most 14 hours), "UTC", or an IANA name such as Asia/Shanghai.
// "Local" (the machine's zone, which differs between machines) and the
// empty string are refused. The error names the value, not the setting: the
// caller prefixes the setting's name.
func ParseTimezone(s string) (*time.Location, error) {
	switch {
	case s == "UTC" || s == "Z":
		return time.UTC, nil
	case s == "":
		return nil, errors.New(`"": empty; want an offset like +08:00 or an IANA zone name`)
	case s == "Local":
		return nil, errors.New(`"Local": the machine's zone is not a billing time zone; want an offset like +08:00 or an IANA zone name`)
	case s[0] == '+' || s[0] == '-':
		if len(s) != 6 || s[3] != ':' || !digits(s[1:3]) || !digits(s[4:6]) {
			return nil, fmt.Errorf("%q: want an offset like +08:00", s)
		}
		h, _ := strconv.Atoi(s[1:3])
		m, _ := strconv.Atoi(s[4:6])
		if m > 59 || h*60+m > 14*60 {
			return nil, fmt.Errorf("%q: want an offset from -14:00 to +14:00", s)
		}
		off := h*3600 + m*60
		if s[0] == '-' {
			off = -off
		}
		return time.FixedZone(s, off), nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil || !zoneName.MatchString(s) {
		return nil, fmt.Errorf("%q: want an offset like +08:00 or an IANA zone name", s)
	}
	return loc, nil
}

// zoneName is the form of an IANA zone name that billing records carry
// (the pattern of "timezone" in billing-record.schema.json).
var zoneName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// TimezoneName is how a billing record names loc: its fixed offset (+08:00)
// or its IANA name.
func TimezoneName(loc *time.Location) string {
	if loc == time.UTC {
		return "+00:00"
	}
	return loc.String()
}

// Day is a calendar day in the billing time zone, counted in days since
// 1970-01-01 (as a ClickHouse Date).
type Day int32

// DayOf returns the calendar day of t in loc.
func DayOf(t time.Time, loc *time.Location) Day {
	// The local date is the date of the instant shifted by loc's offset
	// then: no calendar arithmetic needed.
	_, off := t.In(loc).Zone()
	return dayOfLocal(t.Unix() + int64(off))
}

// dayOfLocal returns the day of a local time in seconds since 1970-01-01.
func dayOfLocal(sec int64) Day {
	d := sec / 86400
	if sec%86400 < 0 {
		d--
	}
	return Day(d)
}

// Days is DayOf for one location, keeping the location's offset over the
// span of time it holds, so that most times need no zone lookup. The zero
// value is not usable: make one with NewDays.
type Days struct {
	loc      *time.Location
	from, to int64 // [from, to): Unix seconds where off holds
	off      int64
}

// NewDays returns a Days of loc.
func NewDays(loc *time.Location) *Days { return &Days{loc: loc} }

// Of returns the calendar day of t, as DayOf(t, loc) does.
func (z *Days) Of(t time.Time) Day {
	sec := t.Unix()
	if sec < z.from || sec >= z.to {
		lt := t.In(z.loc)
		_, off := lt.Zone()
		start, end := lt.ZoneBounds()
		z.from, z.to, z.off = math.MinInt64, math.MaxInt64, int64(off)
		if !start.IsZero() {
			z.from = start.Unix()
		}
		if !end.IsZero() {
			z.to = end.Unix()
		}
	}
	return dayOfLocal(sec + z.off)
}

// DayFromDate returns the Day of a civil date.
func DayFromDate(y int, m time.Month, d int) Day {
	return Day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// Date is the day as a UTC midnight, the form ClickHouse Date columns take.
func (d Day) Date() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// String is the day as YYYY-MM-DD.
func (d Day) String() string { return d.Date().Format(time.DateOnly) }

// Month returns the month that holds the day.
func (d Day) Month() Month {
	y, m, _ := d.Date().Date()
	return Month{Year: y, Month: m}
}

// Month is a calendar month in the billing time zone.
type Month struct {
	Year  int
	Month time.Month
}

// ParseMonth reads YYYY-MM.
func ParseMonth(s string) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Month{}, fmt.Errorf("%q: want YYYY-MM", s)
	}
	return Month{t.Year(), t.Month()}, nil
}

// MonthOf returns the calendar month of t in loc.
func MonthOf(t time.Time, loc *time.Location) Month {
	y, m, _ := t.In(loc).Date()
	return Month{y, m}
}

func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.Year, int(m.Month)) }

// FirstDay and LastDay bound the month.
func (m Month) FirstDay() Day { return DayFromDate(m.Year, m.Month, 1) }
func (m Month) LastDay() Day  { return m.Next().FirstDay() - 1 }

// Days is the number of days in the month.
func (m Month) Days() int { return int(m.LastDay()-m.FirstDay()) + 1 }

// Next and Prev are the adjacent months.
func (m Month) Next() Month {
	if m.Month == time.December {
		return Month{m.Year + 1, time.January}
	}
	return Month{m.Year, m.Month + 1}
}
func (m Month) Prev() Month {
	if m.Month == time.January {
		return Month{m.Year - 1, time.December}
	}
	return Month{m.Year, m.Month - 1}
}

// Start is the instant the month begins in loc; End the instant it ends
// (the start of the next month). See Day.Start.
func (m Month) Start(loc *time.Location) time.Time { return m.FirstDay().Start(loc) }
func (m Month) End(loc *time.Location) time.Time   { return m.Next().Start(loc) }

// Start returns the first instant of the day in loc: the earliest instant t
// with DayOf(t, loc) >= d, the boundary DayOf draws. Where a change of
// offset skips or repeats local midnight (America/Havana, Atlantic/Azores,
// Asia/Amman, …), time.Date(y, m, d, 0, 0, 0, 0, loc) may be an hour off
// that boundary; Start is not.
func (d Day) Start(loc *time.Location) time.Time {
	y, m, dd := d.Date().Date()
	if t := time.Date(y, m, dd, 0, 0, 0, 0, loc); DayOf(t, loc) == d && DayOf(t.Add(-time.Second), loc) == d-1 {
		return t
	}
	// Offsets stay within ±26 hours: search the whole seconds around UTC
	// midnight for the first one of the day.
	lo, hi := int64(d)*86400-26*3600, int64(d)*86400+26*3600 // DayOf(lo) < d <= DayOf(hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if DayOf(time.Unix(mid, 0), loc) >= d {
			hi = mid
		} else {
			lo = mid
		}
	}
	return time.Unix(hi, 0).In(loc)
}

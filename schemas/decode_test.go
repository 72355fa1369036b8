package schemas

import (
	"errors"
	"testing"
	"time"
)

// FuzzDecodeFast checks that the fast decoder, whenever it accepts an input,
// returns exactly what the encoding/json path returns, time zone included.
func FuzzDecodeFast(f *testing.F) {
	for _, ev := range benchEvents {
		f.Add([]byte(ev.json))
	}
	for _, s := range []string{
		` {"id":"e1" , "type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u1","x":[1],"platform":"ios"} `,
		`{"id":"e1","type":"login","app":1,"time":"2026-11-25T21:00:00.123456789123-05:30","user":"日本","n":-1.5e3,"s":"a\"b\u00e9","t":true,"z":null}`,
		`{"id":"e1","type":"message","app":1,"time":"2026-02-29T21:00:00+08:00","user":"u","channel":"live","count":9223372036854775807}`,
		`{"id":"e1","type":"message","app":1,"time":"2028-02-29T23:59:59.999+14:00","user":"u","channel":"live","count":18446744073709551616}`,
		`{"id":"e1","type":"call","app":1,"time":"2026-11-25T21:00:00+00:00","user":"u","media":"audio","seconds":0,"call":"c"}`,
		`{"id":"e1","type":"group","app":1,"time":"0000-01-01T00:00:00Z","op":"dissolve","group":"g","group_type":"Work","user":"o"}`,
		`{"id":"e1","type":"plan","app":1,"time":"9999-12-31T23:59:59-23:59","edition":"developer","Edition":"premium"}`,
		`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"developer","id":"e2"}`,
		`{"id":"e1","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u","platform":"ios","count":"x","seconds":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		std, err := decodeStd(data)
		text, textErr := decodeTextStrings(data)
		sameTime := text.Time.Equal(std.Time) && text.Time.Location().String() == std.Time.Location().String()
		text.Time = std.Time
		if (textErr == nil) != (err == nil) || err == nil && (text != std || !sameTime) {
			t.Fatalf("unexpected DecodeEventText of %q; got %+v, %v; want %+v, %v", data, text, textErr, std, err)
		}
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", data, err)
		}
		if !fast.Time.Equal(std.Time) || fast.Time.Location().String() != std.Time.Location().String() {
			t.Fatalf("unexpected time of %q; got %s; want %s", data, fast.Time, std.Time)
		}
		if _, o1 := fast.Time.Zone(); true {
			if _, o2 := std.Time.Zone(); o1 != o2 {
				t.Fatalf("unexpected offset of %q; got %d; want %d", data, o1, o2)
			}
		}
		fast.Time, std.Time = time.Time{}, time.Time{}
		if fast != std {
			t.Fatalf("unexpected event of %q; got %+v; want %+v", data, fast, std)
		}
	})
}

// decodeTextStrings is DecodeEventText with the strings set.
func decodeTextStrings(data []byte) (Event, error) {
	e, text, err := DecodeEventText(data)
	if err != nil {
		return Event{}, err
	}
	if e.ID != "" || e.User != "" || e.Group != "" || e.CallID != "" {
		return Event{}, errors.New("DecodeEventText left a string in the event")
	}
	text.SetStrings(&e)
	return e, nil
}

func TestDecodeFastTakesCommonEvents(t *testing.T) {
	f := func(input string, want bool) {
		t.Helper()
		if _, ok := decodeFast([]byte(input)); ok != want {
			t.Fatalf("unexpected fast path for %s; got %v; want %v", input, ok, want)
		}
	}
	for _, ev := range benchEvents {
		f(ev.json, ev.name != "invalid")
	}
	const head = `{"id":"e1","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u1"`
	f(head+`}`, true)
	f(head+`,"extra":"x","n":1.5}`, true)
	f(head+`,"User":"u2"}`, false) // encoding/json folds the key
	f(head+`,"user":"u2"}`, false) // repeated
	f(head+`,"extra":{}}`, false)  // nested
	f(`{"id":"e\u0031","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u1"}`, false)
	f(head+`} x`, false)
}

func TestDecodeEventAllocs(t *testing.T) {
	data := []byte(benchEvents[0].json)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeEvent(data); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Fatalf("unexpected allocations per decode; got %v; want at most 1", n)
	}
	var ie *InvalidError
	if _, err := DecodeEvent([]byte(benchEvents[len(benchEvents)-1].json)); !errors.As(err, &ie) {
		t.Fatalf("unexpected error; got %v", err)
	}
}

func TestDayOf(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skip("no zoneinfo:", err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	locs := []*time.Location{time.UTC, time.FixedZone("+08:00", 8*3600), time.FixedZone("-05:30", -5*3600-1800), shanghai, ny}
	for _, loc := range locs {
		for sec := int64(-3e9); sec < 5e9; sec += 3607*7 + 13 {
			tm := time.Unix(sec, 999_999_999)
			y, m, d := tm.In(loc).Date()
			if got, want := DayOf(tm, loc), DayFromDate(y, m, d); got != want {
				t.Fatalf("unexpected day of %s in %s; got %s; want %s", tm, loc, got, want)
			}
		}
	}
}

// FuzzParseRFC3339 checks parseRFC3339 against the simpler parser it
// replaced, and against time.Parse whenever it accepts a time.
func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{
		"2026-11-25T21:00:00Z", "2026-11-25T21:00:00.123+08:00", "2028-02-29T23:59:59.999999999999-23:59",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00", "2026-02-29T00:00:00Z", "2026-11-25T21:00:00.Z",
		"2026-11-25T21:00:00.1234567891-05:30", "2026-13-01T00:00:00Z", "2026-11-25t21:00:00z", "2026-11-25T24:00:00Z",
		"-026-11-25T21:00:00Z", "2026-11-25T21:00:00+08:60",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		got, ok := parseRFC3339(s)
		want, wantOK := parseRFC3339Ref(s)
		if ok != wantOK || !got.Equal(want) || got.Location().String() != want.Location().String() {
			t.Fatalf("unexpected parse of %q; got %v, %v; want %v, %v", s, got, ok, want, wantOK)
		}
		if !ok {
			return
		}
		std, err := time.Parse(time.RFC3339Nano, string(s))
		_, o1 := got.Zone()
		_, o2 := std.Zone()
		if err != nil || !got.Equal(std) || o1 != o2 || got.Location().String() != std.Location().String() {
			t.Fatalf("unexpected parse of %q; got %v; time.Parse: %v, %v", s, got, std, err)
		}
	})
}

// parseRFC3339Ref is parseRFC3339 as it was before it was made faster: it
// parses what the fast path of time.Parse(time.RFC3339Nano, s)
// accepts, with the same result (time/format_rfc3339.go); ok is false for
// anything else, which time.Parse may still accept.
func parseRFC3339Ref(s []byte) (time.Time, bool) {
	ok := true
	num := func(s []byte, min, max int) int {
		x := 0
		for _, c := range s {
			if c < '0' || '9' < c {
				ok = false
				return min
			}
			x = x*10 + int(c-'0')
		}
		if x < min || max < x {
			ok = false
			return min
		}
		return x
	}
	if len(s) < len("2006-01-02T15:04:05") {
		return time.Time{}, false
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, daysIn(month, year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || !(s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':') {
		return time.Time{}, false
	}
	s = s[19:]
	var nsec int
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		n := 2
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		// As time.parseNanoseconds: nine digits at most count.
		scale := 1_000_000_000
		for _, c := range s[1:min(n, 10)] {
			scale /= 10
			nsec += int(c-'0') * scale
		}
		s = s[n:]
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	if len(s) == 1 && s[0] == 'Z' {
		return time.Unix(unix, int64(nsec)).UTC(), true
	}
	if len(s) != len("-07:00") {
		return time.Time{}, false
	}
	hr := num(s[1:3], 0, 23)
	mm := num(s[4:6], 0, 59)
	if !ok || !((s[0] == '-' || s[0] == '+') && s[3] == ':') {
		return time.Time{}, false
	}
	off := (hr*60 + mm) * 60
	if s[0] == '-' {
		off = -off
	}
	t := time.Unix(unix-int64(off), int64(nsec))
	// As time.Parse: the local zone if it has that offset then, else a
	// fixed zone without a name.
	if _, lo := t.Zone(); lo == off {
		return t, true
	}
	return t.In(time.FixedZone("", off)), true
}

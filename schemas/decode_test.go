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

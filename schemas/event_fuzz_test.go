package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// eventSeeds are the seeds of FuzzDecodeEvent besides
// testdata/fuzz/FuzzDecodeEvent; TestDecoderAgreesWithSchema runs both.
var eventSeeds = []string{
	`{"id":"e1","type":"login","app":1400000001,"time":"2026-11-25T21:00:00+08:00","user":"u1","platform":"ios"}`,
	`{"id":"e2","type":"message","app":1400000001,"time":"2026-11-25T13:00:00.123456789Z","user":"u1","channel":"group","count":3}`,
	`{"id":"e3","type":"group","app":1,"time":"2026-11-25T21:00:00-05:30","op":"create","group":"g1","group_type":"AVChatRoom","user":"owner"}`,
	`{"id":"e4","type":"call","app":4294967295,"time":"2026-11-25T21:00:00Z","user":"u1","media":"video","seconds":0,"call":"c1"}`,
	`{"id":"e5","type":"plan","app":1400000002,"time":"2026-11-25T21:00:00+08:00","edition":"premium"}`,
	`{"id":"\u0001\u007f\u2028<>","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"\ud800"}`,
	`{"id":"e6","type":"message","app":1,"time":"2026-11-25T21:00:00Z","user":"u","channel":"c2c","count":null}`,
	`{"id":"e7","type":"plan","app":01,"time":"2026-11-25T21:00:00Z","edition":"standard"}`,
	`[{"id":"e1"}]`,
	`{"id":"e8","type":"plan","app":1e3,"time":"2026-11-25T21:00:00Z","edition":"standard"}`,
	`{"id":"inv-` + "\xff" + `","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u"}`,
	`{"id":"inv-\ud800","type":"login","app":1,"time":"2026-11-25T21:00:00Z","user":"u"}`,
	`{"id":"e9","type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"standard","App":2}`,
}

// FuzzDecodeEvent checks that DecodeEvent never panics, refuses only with an
// *InvalidError, and that every event it accepts survives MarshalJSON →
// DecodeEvent unchanged (so what the gateway re-encodes is what it decoded).
// Seeds: eventSeeds and testdata/fuzz/FuzzDecodeEvent.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEvent(data)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of an accepted event: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("MarshalJSON wrote invalid JSON %q for input %q", b, data)
		}
		got, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("re-encoded event %s refused: %v (input %q)", b, err, data)
		}
		if !got.Time.Equal(e.Time) {
			t.Fatalf("time changed in round trip; got %s; want %s", got.Time, e.Time)
		}
		got.Time = e.Time
		if got != e {
			t.Fatalf("event changed in round trip; got %+v; want %+v", got, e)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted event does not Validate: %v", err)
		}
	})
}

// FuzzAppendJSON checks that AppendJSON writes the bytes of the encoder it
// replaced (referenceJSON) for any strings, times and numbers.
func FuzzAppendJSON(f *testing.F) {
	f.Add("e1", "u1", "group", uint8(1), int64(1764075600123456789), 3600*8, int64(3))
	f.Add("a\"b", "\u2028<&>", "\xff\x00", uint8(3), int64(0), 0, int64(-1))
	f.Add("日本", "u\t", "Work", uint8(2), int64(-9e18), -19800, int64(0))
	f.Fuzz(func(t *testing.T, id, user, other string, typ uint8, nanos int64, offset int, n int64) {
		types := []EventType{Login, Message, Group, Call, Plan, EventType(other)}
		e := Event{
			ID: id, Type: types[int(typ)%len(types)], App: uint32(n), User: user,
			Time:     time.Unix(0, nanos).In(time.FixedZone("", offset%(24*3600))),
			Platform: other, Channel: other, Count: n, Op: other, Group: id, GroupType: user,
			Media: other, Seconds: n, CallID: user, Edition: other,
		}
		if got, want := e.AppendJSON(nil), referenceJSON(e); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON wrote %s; want %s", got, want)
		}
	})
}

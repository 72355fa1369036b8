package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDecodeEventReasons(t *testing.T) {
	long := strings.Repeat("x", 129)
	// f checks that input is refused with an *InvalidError on field whose
	// message contains reason; field "-" means the event is accepted.
	f := func(input, field, reason string) {
		t.Helper()
		e, err := DecodeEvent([]byte(input))
		if field == "-" {
			if err != nil {
				t.Fatalf("unexpected error for %s: %v", input, err)
			}
			if verr := e.Validate(); verr != nil {
				t.Fatalf("decoded event does not validate: %v; input %s", verr, input)
			}
			return
		}
		var ie *InvalidError
		if !errors.As(err, &ie) {
			t.Fatalf("unexpected error type for %s; got %T %v; want *InvalidError", input, err, err)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		if ie.Field != field || !strings.Contains(ie.Reason, reason) {
			t.Fatalf("unexpected error for %s; got field %q reason %q; want field %q reason containing %q", input, ie.Field, ie.Reason, field, reason)
		}
	}
	const head = `"id":"e1","app":1400000001,"time":"2026-11-25T21:00:00+08:00"`

	// whole event
	f(`{`, "", "malformed JSON")
	f(`[]`, "", "malformed JSON")
	f(`nul`, "", "malformed JSON")
	// id
	f(`{"type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "id", "required, 1 to 128 bytes")
	f(`{"id":"","type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "id", "required")
	f(`{"id":"`+long+`","type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "id", "too long: 129 bytes, at most 128")
	f(`{"id":7,"type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "id", "must be a string of 1 to 128 bytes; got 7")
	// type
	f(`{"id":"e1","app":1,"time":"2026-11-25T21:00:00Z"}`, "type", "required")
	f(`{`+head+`,"type":"logout"}`, "type", `must be one of login, message, group, call, plan; got "logout"`)
	// app
	f(`{"id":"e1","type":"plan","time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "required")
	f(`{"id":"e1","type":"plan","app":null,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "required")
	f(`{"id":"e1","type":"plan","app":0,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "must be an integer SDKAppID in 1..4294967295; got 0")
	f(`{"id":"e1","type":"plan","app":-1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "got -1")
	f(`{"id":"e1","type":"plan","app":4294967296,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "got 4294967296")
	f(`{"id":"e1","type":"plan","app":1.5,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "got 1.5")
	f(`{"id":"e1","type":"plan","app":"1400000001","time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", `got "1400000001"`)
	f(`{"id":"e1","type":"plan","app":4294967295,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "-", "")
	// time
	f(`{"id":"e1","type":"plan","app":1,"edition":"standard"}`, "time", "required")
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T21:00:00","edition":"standard"}`, "time", "must be RFC 3339 with an offset")
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25 21:00:00+08:00","edition":"standard"}`, "time", "must be RFC 3339")
	f(`{"id":"e1","type":"plan","app":1,"time":1764075600,"edition":"standard"}`, "time", "must be a string")
	// user
	f(`{`+head+`,"type":"login","user":"`+long+`"}`, "user", "too long")
	f(`{`+head+`,"type":"login","user":""}`, "user", "required")
	// login
	f(`{`+head+`,"type":"login"}`, "user", "required for login")
	f(`{`+head+`,"type":"login","user":"u1","platform":"beos"}`, "platform", `must be one of [android ios web windows mac linux ipad other]; got "beos"`)
	f(`{`+head+`,"type":"login","user":"u1"}`, "-", "")
	f(`{`+head+`,"type":"login","user":"u1","platform":"ios","extra":{"ignored":true}}`, "-", "")
	// message
	f(`{`+head+`,"type":"message","channel":"c2c"}`, "user", "required for message (the sender)")
	f(`{`+head+`,"type":"message","user":"u1"}`, "channel", "required, one of [c2c group community live]")
	f(`{`+head+`,"type":"message","user":"u1","channel":"sms"}`, "channel", `got "sms"`)
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":0}`, "count", "must be an integer >= 1; got 0")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":-3}`, "count", "got -3")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":"2"}`, "count", `got "2"`)
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":2.5}`, "count", "got 2.5")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c"}`, "-", "")
	// group
	f(`{`+head+`,"type":"group","group":"g1","group_type":"Work"}`, "op", "required, one of [create dissolve]")
	f(`{`+head+`,"type":"group","op":"rename","group":"g1","group_type":"Work"}`, "op", `got "rename"`)
	f(`{`+head+`,"type":"group","op":"create","group_type":"Work"}`, "group", "required, 1 to 128 bytes")
	f(`{`+head+`,"type":"group","op":"create","group":"`+long+`","group_type":"Work"}`, "group", "too long")
	f(`{`+head+`,"type":"group","op":"create","group":"g1"}`, "group_type", "required, one of [Work Public Meeting Community AVChatRoom]")
	f(`{`+head+`,"type":"group","op":"create","group":"g1","group_type":"work"}`, "group_type", `got "work"`)
	f(`{`+head+`,"type":"group","op":"dissolve","group":"g1","group_type":"AVChatRoom"}`, "-", "")
	// call
	f(`{`+head+`,"type":"call","media":"audio","seconds":1}`, "user", "required for call")
	f(`{`+head+`,"type":"call","user":"u1","seconds":1}`, "media", "required, one of [audio video]")
	f(`{`+head+`,"type":"call","user":"u1","media":"fax","seconds":1}`, "media", `got "fax"`)
	f(`{`+head+`,"type":"call","user":"u1","media":"audio"}`, "seconds", "required for call")
	f(`{`+head+`,"type":"call","user":"u1","media":"audio","seconds":-1}`, "seconds", "must be an integer >= 0; got -1")
	f(`{`+head+`,"type":"call","user":"u1","media":"audio","seconds":1,"call":""}`, "call", "required, 1 to 128 bytes")
	f(`{`+head+`,"type":"call","user":"u1","media":"video","seconds":0,"call":"c1"}`, "-", "")
	// plan
	f(`{`+head+`,"type":"plan"}`, "edition", "required, one of [developer standard premium]")
	f(`{`+head+`,"type":"plan","edition":"enterprise"}`, "edition", `got "enterprise"`)
	f(`{`+head+`,"type":"plan","edition":"premium"}`, "-", "")

	// text encoding/json would change: two ids differing only in invalid
	// bytes must not both become "inv-\uFFFD"
	f(`{"id":"inv-`+"\xff"+`",`+head[len(`"id":"e1",`):]+`,"type":"plan","edition":"premium"}`, "", "invalid UTF-8 at byte 11")
	f(`{"id":"inv-`+"\xfe"+`",`+head[len(`"id":"e1",`):]+`,"type":"plan","edition":"premium"}`, "", "invalid UTF-8 at byte 11")
	f(`{`+head+`,"type":"login","user":"u`+"\xc3"+`"}`, "", "invalid UTF-8")
	f(`{`+head+`,"type":"login","user":"u","note":"`+"\xff"+`"}`, "", "invalid UTF-8")
	f(`{`+head+`,"type":"login","user":"u\ud800"}`, "", "unpaired UTF-16 surrogate escape")
	f(`{`+head+`,"type":"login","user":"u\udfff\ud800"}`, "", "unpaired UTF-16 surrogate escape")
	f(`{`+head+`,"type":"login","user":"u\ud83d\ude00"}`, "-", "")
	f(`{`+head+`,"type":"login","user":"u\\ud800"}`, "-", "")
	// keys match exactly, as in the JSON Schema
	f(`{"id":"e1","type":"plan","App":1400000001,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "required")
	f(`{"ID":"e1","type":"plan","app":1400000001,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "id", "required")
	// time as RFC 3339 spells it
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T1:00:00Z","edition":"standard"}`, "time", "two-digit fields")
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T21:00:00+24:00","edition":"standard"}`, "time", "offset within ±23:59")
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T21:00:00,5Z","edition":"standard"}`, "time", "must be RFC 3339")
	f(`{"id":"e1","type":"plan","app":1,"time":"2026-11-25T21:00:00.5-23:59","edition":"standard"}`, "-", "")
	// every contract field present is checked; null is no value
	f(`{`+head+`,"type":"login","user":"u1","channel":"sms"}`, "channel", `got "sms"`)
	f(`{`+head+`,"type":"login","user":"u1","seconds":-1}`, "seconds", "must be an integer >= 0")
	f(`{`+head+`,"type":"login","user":"u1","platform":null}`, "platform", "got null")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":null}`, "count", "got null")
	f(`{`+head+`,"type":"login","user":"u1","channel":"c2c","group":"g"}`, "-", "")
	// integers in any JSON notation, exactly
	f(`{"id":"e1","type":"plan","app":1.4e9,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "-", "")
	f(`{"id":"e1","type":"plan","app":14000000010e-1,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "-", "")
	f(`{"id":"e1","type":"plan","app":1400000001.5e0,"time":"2026-11-25T21:00:00Z","edition":"standard"}`, "app", "got 1400000001.5e0")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":1e400}`, "count", "got 1e400")
	f(`{`+head+`,"type":"message","user":"u1","channel":"c2c","count":9223372036854775808}`, "count", "got 9223372036854775808")
	f(`{`+head+`,"type":"call","user":"u1","media":"audio","seconds":1e-99999999999999999999}`, "seconds", "got 1e-99999999999999999999")
	// no Go type names in reasons
	f(`[]`, "", "an event is a JSON object, not an array")
	f(`"login"`, "", "an event is a JSON object, not a string")
	f(`null`, "", "an event is a JSON object, not null")
}

func TestDecodeEventIntegers(t *testing.T) {
	f := func(raw string, want uint64, wantOK bool) {
		t.Helper()
		got, ok := jsonUint([]byte(raw))
		if got != want || ok != wantOK {
			t.Fatalf("unexpected jsonUint(%s); got %d %v; want %d %v", raw, got, ok, want, wantOK)
		}
	}
	f("0", 0, true)
	f("-0", 0, true)
	f("-0.0e-7", 0, true)
	f("0e99999999999999999999", 0, true)
	f("7", 7, true)
	f("7.0", 7, true)
	f("0.7e1", 7, true)
	f("700e-2", 7, true)
	f("18446744073709551615", 1<<64-1, true)
	f("1.8446744073709551615e19", 1<<64-1, true)
	f("18446744073709551616", 0, false)
	f("1e20", 0, false)
	f("1e19", 1e19, true)
	f("-1", 0, false)
	f("7.5", 0, false)
	f("1e-1", 0, false)
	f("1e400", 0, false)
	f("07", 0, false)
	f("1.", 0, false)
	f("", 0, false)
}

// TestNoGoTypeNames checks that no refusal names a Go type, whatever the
// shape of the input.
func TestNoGoTypeNames(t *testing.T) {
	for _, in := range []string{`[]`, `"x"`, `1`, `true`, `null`, `{"id":{}}`, `{"id":"e","type":[]}`, `{"id":"e","type":"plan","app":{}}`,
		`{"id":"e","type":"plan","app":1,"time":[]}`, `{"id":"e","type":"plan","app":1,"time":"2026-11-25T21:00:00Z","edition":7}`, `{"a":1,}`} {
		_, err := DecodeEvent([]byte(in))
		if err == nil {
			t.Fatalf("unexpected success for %s", in)
		}
		for _, leak := range []string{"schemas.", "wireEvent", "json.RawMessage", "map[", "Go value", "Go struct"} {
			if strings.Contains(err.Error(), leak) {
				t.Fatalf("error for %s names a Go type: %v", in, err)
			}
		}
	}
}

func TestDecodeEventDefaults(t *testing.T) {
	e, err := DecodeEvent([]byte(`{"id":"e1","type":"message","app":1400000001,"time":"2026-11-25T21:00:00.5+08:00","user":"u1","channel":"group"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{ID: "e1", Type: Message, App: 1400000001, User: "u1", Channel: "group", Count: 1,
		Time: time.Date(2026, 11, 25, 13, 0, 0, 5e8, time.UTC)}
	if !e.Time.Equal(want.Time) {
		t.Fatalf("unexpected time; got %s; want %s", e.Time, want.Time)
	}
	e.Time, want.Time = time.Time{}, time.Time{}
	if e != want {
		t.Fatalf("unexpected event; got %+v; want %+v", e, want)
	}
}

func TestMarshalJSONEscapes(t *testing.T) {
	// Every string field must come out as valid JSON, whatever bytes it holds.
	for _, s := range []string{"a\x01b", "tab\there", "del\x7f", "quote\"back\\slash", "bell\a", "\u2028", "<&>", "日本語"} {
		e := Event{ID: s, Type: Login, App: 1, Time: time.Unix(0, 0).UTC(), User: s}
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("MarshalJSON of id %q wrote %s, which does not decode: %v", s, b, err)
		}
		if got.ID != s || got.User != s {
			t.Fatalf("unexpected round trip of %q; got id %q user %q", s, got.ID, got.User)
		}
	}
}

// referenceJSON is MarshalJSON as it was before AppendJSON: every string
// through encoding/json. AppendJSON must write the same bytes.
func referenceJSON(e Event) []byte {
	str := func(s string) []byte {
		enc, _ := json.Marshal(s)
		return enc
	}
	b := []byte(`{"id":`)
	b = append(b, str(e.ID)...)
	b = append(b, `,"type":`...)
	b = append(b, str(string(e.Type))...)
	b = append(b, `,"app":`...)
	b = strconv.AppendUint(b, uint64(e.App), 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	field := func(name, v string) {
		if v != "" {
			b = append(b, `,"`+name+`":`...)
			b = append(b, str(v)...)
		}
	}
	field("user", e.User)
	switch e.Type {
	case Login:
		field("platform", e.Platform)
	case Message:
		field("channel", e.Channel)
		if e.Count != 0 {
			b = append(b, `,"count":`...)
			b = strconv.AppendInt(b, e.Count, 10)
		}
	case Group:
		field("op", e.Op)
		field("group", e.Group)
		field("group_type", e.GroupType)
	case Call:
		field("media", e.Media)
		b = append(b, `,"seconds":`...)
		b = strconv.AppendInt(b, e.Seconds, 10)
		field("call", e.CallID)
	case Plan:
		field("edition", e.Edition)
	}
	return append(b, '}')
}

// encodeStrings are the strings TestAppendJSONMatchesReference draws from:
// plain ones and every kind encoding/json escapes.
var encodeStrings = []string{
	"", "u1", "7f3c2a9e41d84b0c9a1e5d2f6b7c8d90", "sim-7-12345", "Public", "a b~", "del\x7f",
	"quote\"", "back\\slash", "tab\there", "nl\n", "cr\r", "bell\a", "\b\f", "nul\x00", "\x1f",
	"<script>", "a&b", "x>y", "日本語", "émile", "\u2028", "\u2029", "\ud7ff", "\U0001F600",
	"bad\xffutf8", "\xc3", "\xed\xa0\x80", "mixed 用户\"<\x01>",
}

func TestAppendJSONMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := func() string { return encodeStrings[r.IntN(len(encodeStrings))] }
	zones := []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("", -(5*3600 + 30*60))}
	types := []EventType{Login, Message, Group, Call, Plan, "", "other\"type"}
	for i := range 20000 {
		e := Event{
			ID: s(), Type: types[r.IntN(len(types))], App: r.Uint32(),
			Time: time.Unix(r.Int64N(4e9), r.Int64N(1e9)*int64(r.IntN(2))).In(zones[r.IntN(len(zones))]),
			User: s(), Platform: s(), Channel: s(), Count: r.Int64N(3) - 1,
			Op: s(), Group: s(), GroupType: s(), Media: s(), Seconds: r.Int64N(8000) - 1, CallID: s(), Edition: s(),
		}
		want := referenceJSON(e)
		got, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d: MarshalJSON wrote\n%s\nwant\n%s", i, got, want)
		}
		// AppendJSON appends: what dst held stays in front.
		if got := e.AppendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
			t.Fatalf("event %d: AppendJSON onto a prefix wrote %s", i, got)
		}
	}
}

func TestAppendJSONEscapes(t *testing.T) {
	e := Event{ID: "a\"<&>\u2028\x01", Type: Plan, App: 1, Time: time.Date(2026, 11, 25, 21, 0, 0, 5e8, time.FixedZone("", 8*3600)), Edition: "premium"}
	want := `{"id":"a\"\u003c\u0026\u003e\u2028\u0001","type":"plan","app":1,"time":"2026-11-25T21:00:00.5+08:00","edition":"premium"}`
	if got := string(e.AppendJSON(nil)); got != want {
		t.Fatalf("unexpected encoding; got %s; want %s", got, want)
	}
}

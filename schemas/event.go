package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// EventType names what an event reports.
type EventType string

// The event types of contract v1.
const (
	Login   EventType = "login"
	Message EventType = "message"
	Group   EventType = "group"
	Call    EventType = "call"
	Plan    EventType = "plan"
)

// Limits of contract v1.
const (
	MaxIDBytes   = 128
	MaxUserBytes = 128
	MaxAppID     = 4294967295
)

// Event is one usage event of contract v1 (schemas/event.schema.json).
// Fields that do not apply to its Type are empty.
type Event struct {
	ID   string    `json:"id"`
	Type EventType `json:"type"`
	App  uint32    `json:"app"`
	Time time.Time `json:"time"`
	User string    `json:"user,omitempty"`

	Platform string `json:"platform,omitempty"` // login

	Channel string `json:"channel,omitempty"` // message: c2c, group, community, live
	Count   int64  `json:"count,omitempty"`   // message: number of messages, ≥ 1

	Op        string `json:"op,omitempty"`         // group: create, dissolve
	Group     string `json:"group,omitempty"`      // group: group id
	GroupType string `json:"group_type,omitempty"` // group: Work, Public, Meeting, Community, AVChatRoom

	Media   string `json:"media,omitempty"`   // call: audio, video
	Seconds int64  `json:"seconds,omitempty"` // call: duration, ≥ 0
	CallID  string `json:"call,omitempty"`    // call: optional call id

	Edition string `json:"edition,omitempty"` // plan: developer, standard, premium
}

// Allowed values of the enumerated fields.
var (
	Platforms  = []string{"android", "ios", "web", "windows", "mac", "linux", "ipad", "other"}
	Channels   = []string{"c2c", "group", "community", "live"}
	GroupOps   = []string{"create", "dissolve"}
	GroupTypes = []string{"Work", "Public", "Meeting", "Community", "AVChatRoom"}
	Medias     = []string{"audio", "video"}
	Editions   = []string{"developer", "standard", "premium"}
)

// ErrInvalid is wrapped by every error that says an event breaks the contract.
var ErrInvalid = errors.New("invalid event")

// InvalidError says which field of an event breaks the contract and how.
type InvalidError struct {
	Field  string // JSON field name, or "" for the whole event
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeEvent parses one JSON event and checks it against contract v1, by
// the rules of event.schema.json: keys match exactly (so "App" is an
// unknown field), every contract field that is present must be valid even
// when its type does not use it, null is not a value of any field, numbers
// may be written in any JSON notation that is an integer (1e3), and time is
// RFC 3339 with two-digit fields and an offset within ±23:59. The event must
// be valid UTF-8 throughout, without unpaired UTF-16 surrogate escapes:
// encoding/json would turn either into U+FFFD and merge distinct ids.
// Unknown fields are ignored. A contract violation returns an *InvalidError.
func DecodeEvent(data []byte) (Event, error) {
	if e, ok := decodeFast(data); ok {
		return e, nil
	}
	return decodeStd(data)
}

// decodeStd is DecodeEvent with encoding/json: it decides every case and
// words every error; decodeFast only takes the common valid ones off it.
func decodeStd(data []byte) (Event, error) {
	if err := checkText(data); err != nil {
		return Event{}, err
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		if json.Valid(data) {
			return Event{}, &InvalidError{Reason: "malformed JSON: an event is a JSON object, not " + jsonKind(t)}
		}
	}
	var w map[string]json.RawMessage
	if err := json.Unmarshal(data, &w); err != nil {
		return Event{}, &InvalidError{Reason: "malformed JSON: " + jsonReason(err)}
	}
	var e Event
	var err error
	// Required by every type.
	if e.ID, err = stringField(w, "id", MaxIDBytes, true); err != nil {
		return Event{}, err
	}
	typ, err := enumField(w, "type", eventTypes)
	if err != nil {
		return Event{}, err
	}
	if typ == "" {
		return Event{}, invalid("type", "required")
	}
	e.Type = EventType(typ)
	app, err := intField(w, "app", 1, MaxAppID, true)
	if err != nil {
		return Event{}, err
	}
	e.App = uint32(app)
	if e.Time, err = timeField(w); err != nil {
		return Event{}, err
	}
	// Every other contract field that is present, whatever the type.
	if e.User, err = stringField(w, "user", MaxUserBytes, false); err != nil {
		return Event{}, err
	}
	var f fields
	for _, x := range [...]struct {
		dst     *string
		name    string
		allowed []string
	}{
		{&f.platform, "platform", Platforms}, {&f.channel, "channel", Channels}, {&f.op, "op", GroupOps},
		{&f.groupType, "group_type", GroupTypes}, {&f.media, "media", Medias}, {&f.edition, "edition", Editions},
	} {
		if *x.dst, err = enumField(w, x.name, x.allowed); err != nil {
			return Event{}, err
		}
	}
	if f.group, err = stringField(w, "group", MaxIDBytes, false); err != nil {
		return Event{}, err
	}
	if f.call, err = stringField(w, "call", MaxIDBytes, false); err != nil {
		return Event{}, err
	}
	if f.count, err = intField(w, "count", 1, maxInt64, false); err != nil {
		return Event{}, err
	}
	if f.seconds, err = intField(w, "seconds", 0, maxInt64, false); err != nil {
		return Event{}, err
	}
	_, hasCount := w["count"]
	_, hasSeconds := w["seconds"]

	// What the type requires.
	switch e.Type {
	case Login:
		if e.User == "" {
			return Event{}, invalid("user", "required for login")
		}
		e.Platform = f.platform
	case Message:
		if e.User == "" {
			return Event{}, invalid("user", "required for message (the sender)")
		}
		if e.Channel = f.channel; e.Channel == "" {
			return Event{}, invalid("channel", "required, one of %v", Channels)
		}
		e.Count = 1
		if hasCount {
			e.Count = int64(f.count)
		}
	case Group:
		if e.Op = f.op; e.Op == "" {
			return Event{}, invalid("op", "required, one of %v", GroupOps)
		}
		if e.Group = f.group; e.Group == "" {
			return Event{}, invalid("group", "required, 1 to %d bytes", MaxIDBytes)
		}
		if e.GroupType = f.groupType; e.GroupType == "" {
			return Event{}, invalid("group_type", "required, one of %v", GroupTypes)
		}
	case Call:
		if e.User == "" {
			return Event{}, invalid("user", "required for call")
		}
		if e.Media = f.media; e.Media == "" {
			return Event{}, invalid("media", "required, one of %v", Medias)
		}
		if !hasSeconds {
			return Event{}, invalid("seconds", "required for call")
		}
		e.Seconds = int64(f.seconds)
		e.CallID = f.call
	case Plan:
		if e.Edition = f.edition; e.Edition == "" {
			return Event{}, invalid("edition", "required, one of %v", Editions)
		}
	}
	return e, nil
}

// fields holds the optional contract fields decodeStd checked.
type fields struct {
	platform, channel, op, groupType, media, edition string
	group, call                                      string
	count, seconds                                   uint64
}

var eventTypes = []string{string(Login), string(Message), string(Group), string(Call), string(Plan)}

const maxInt64 = 1<<63 - 1

// Validate checks an Event built in code against contract v1, by the same
// rules as DecodeEvent.
func (e *Event) Validate() error {
	if err := e.CheckText(); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return &InvalidError{Reason: err.Error()}
	}
	_, err = DecodeEvent(b)
	return err
}

// CheckText returns an *InvalidError naming the first string field of e
// that is not valid UTF-8. The encoder would write its bad bytes as U+FFFD,
// so that ids "a\xff" and "a\xfe" would be published as one.
func (e *Event) CheckText() error {
	for _, f := range [...]struct{ name, v string }{
		{"id", e.ID}, {"type", string(e.Type)}, {"user", e.User}, {"platform", e.Platform},
		{"channel", e.Channel}, {"op", e.Op}, {"group", e.Group}, {"group_type", e.GroupType},
		{"media", e.Media}, {"call", e.CallID}, {"edition", e.Edition},
	} {
		if !utf8.ValidString(f.v) {
			return invalid(f.name, "invalid UTF-8: strings must be valid UTF-8")
		}
	}
	return nil
}

// MarshalJSON writes the event in its wire form: only the fields of its type,
// time in RFC 3339 with nanoseconds as needed.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 192)), nil
}

// AppendJSON appends the event's wire form, as MarshalJSON writes it, to dst
// and returns the extended slice.
func (e *Event) AppendJSON(dst []byte) []byte {
	b := append(dst, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"app":`...)
	b = strconv.AppendUint(b, uint64(e.App), 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendJSONField(b, `,"user":`, e.User)
	switch e.Type {
	case Login:
		b = appendJSONField(b, `,"platform":`, e.Platform)
	case Message:
		b = appendJSONField(b, `,"channel":`, e.Channel)
		if e.Count != 0 {
			b = append(b, `,"count":`...)
			b = strconv.AppendInt(b, e.Count, 10)
		}
	case Group:
		b = appendJSONField(b, `,"op":`, e.Op)
		b = appendJSONField(b, `,"group":`, e.Group)
		b = appendJSONField(b, `,"group_type":`, e.GroupType)
	case Call:
		b = appendJSONField(b, `,"media":`, e.Media)
		b = append(b, `,"seconds":`...)
		b = strconv.AppendInt(b, e.Seconds, 10)
		b = appendJSONField(b, `,"call":`, e.CallID)
	case Plan:
		b = appendJSONField(b, `,"edition":`, e.Edition)
	}
	return append(b, '}')
}

// appendJSONField appends prefix (`,"name":`) and v as a JSON string, unless
// v is empty.
func appendJSONField(b []byte, prefix, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, prefix...), v)
}

// appendJSONString appends s as encoding/json writes it. Strings of ASCII
// from the space on, without '"', '\\', '<', '>' and '&', are copied as they
// are; the others go through encoding/json, which escapes them.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || needsEscape[c] {
			enc, _ := json.Marshal(s) // a string always marshals
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// needsEscape marks the ASCII characters encoding/json escapes besides the
// control characters.
var needsEscape = [0x80]bool{'"': true, '\\': true, '<': true, '>': true, '&': true}

// stringField returns field's string, "" when it is absent (an error when
// required).
func stringField(w map[string]json.RawMessage, field string, max int, required bool) (string, error) {
	raw, ok := w[field]
	if !ok {
		if required {
			return "", invalid(field, "required, 1 to %d bytes", max)
		}
		return "", nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", invalid(field, "must be a string of 1 to %d bytes; got %s", max, jsonKind(raw))
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", invalid(field, "malformed string")
	}
	if v == "" {
		return "", invalid(field, "required, 1 to %d bytes", max)
	}
	if len(v) > max {
		return "", invalid(field, "too long: %d bytes, at most %d", len(v), max)
	}
	return v, nil
}

// enumField returns field's value, one of allowed, or "" when it is absent.
func enumField(w map[string]json.RawMessage, field string, allowed []string) (string, error) {
	raw, ok := w[field]
	if !ok {
		return "", nil
	}
	var v string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
		return "", invalid(field, "must be one of %v; got %s", allowed, jsonKind(raw))
	}
	for _, a := range allowed {
		if v == a {
			return a, nil
		}
	}
	if field == "type" {
		return "", invalid(field, "must be one of %s; got %q", strings.Join(allowed, ", "), truncate(v))
	}
	return "", invalid(field, "must be one of %v; got %q", allowed, truncate(v))
}

// intField returns field's integer in min..max, 0 when it is absent (an
// error when required).
func intField(w map[string]json.RawMessage, field string, min, max uint64, required bool) (uint64, error) {
	raw, ok := w[field]
	if !ok || (required && string(raw) == "null") {
		if required {
			return 0, invalid(field, "required")
		}
		return 0, nil
	}
	n, ok := jsonUint(raw)
	if !ok || n < min || n > max {
		if field == "app" {
			return 0, invalid(field, "must be an integer SDKAppID in 1..%d; got %s", max, truncate(string(raw)))
		}
		return 0, invalid(field, "must be an integer >= %d; got %s", min, truncate(string(raw)))
	}
	return n, nil
}

// timeField returns the event's time: RFC 3339 as the contract's pattern
// spells it, the same parser as the fast path.
func timeField(w map[string]json.RawMessage) (time.Time, error) {
	raw, ok := w["time"]
	if !ok {
		return time.Time{}, invalid("time", "required")
	}
	var v string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
		return time.Time{}, invalid("time", "must be a string, RFC 3339 with an offset; got %s", jsonKind(raw))
	}
	t, ok := parseRFC3339([]byte(v))
	if !ok {
		return time.Time{}, invalid("time", "must be RFC 3339 with an offset, e.g. 2026-11-25T21:00:00+08:00 (two-digit fields, offset within ±23:59); got %q", truncate(v))
	}
	return t, nil
}

// jsonUint returns the value of a JSON number that is a non-negative
// integer in any notation (7, 7.0, 0.7e1, -0), or false. It works on the
// text, so no exponent can make it slow.
func jsonUint(raw []byte) (uint64, bool) {
	s := string(raw)
	if len(s) == 0 || skipNumber(raw, 0) != len(s) {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	whole, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	shift := -len(frac) // value = digits × 10^(shift + e)
	trimmed := strings.TrimRight(digits, "0")
	shift += len(digits) - len(trimmed)
	digits = trimmed
	if digits == "" {
		return 0, true // zero, whatever the sign and exponent
	}
	if neg {
		return 0, false
	}
	if hasExp {
		e, err := strconv.ParseInt(exp, 10, 64)
		if err != nil { // an exponent beyond int64: huge or tiny
			return 0, false
		}
		if e > 40 || e < -40-int64(len(frac)) {
			return 0, false
		}
		shift += int(e)
	}
	if shift < 0 || len(digits)+shift > 20 {
		return 0, false // a fraction, or beyond uint64
	}
	n, err := strconv.ParseUint(digits+strings.Repeat("0", shift), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// checkText refuses what encoding/json would silently change: bytes that
// are not UTF-8 and \u escapes of unpaired UTF-16 surrogates, both turned
// into U+FFFD (so ids "a\xff" and "a\xfe" would become one).
func checkText(data []byte) error {
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return &InvalidError{Reason: fmt.Sprintf("invalid UTF-8 at byte %d: strings must be valid UTF-8", i)}
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 >= len(data) {
			continue
		}
		if data[i+1] != 'u' {
			i++ // an escaped character, possibly a backslash
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok || !utf16.IsSurrogate(r) {
			i++
			continue
		}
		if r < 0xdc00 { // a high surrogate needs a low one next
			if lo, ok := hex4(data, i+8); ok && i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' && 0xdc00 <= lo && lo <= 0xdfff {
				i += 11
				continue
			}
		}
		return &InvalidError{Reason: fmt.Sprintf("unpaired UTF-16 surrogate escape at byte %d: strings must be valid UTF-8", i)}
	}
	return nil
}

// hex4 reads four hex digits at i.
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	return rune(v), err == nil
}

// jsonKind names the JSON value raw starts, for error messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string " + truncate(string(raw))
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 'n':
		return "null"
	case c == 't' || c == 'f':
		return string(raw)
	default:
		return truncate(string(raw))
	}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	// Any other error of encoding/json names Go types, which say nothing
	// to a client.
	return "not a JSON object"
}

package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
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

// wireEvent is Event as it arrives, loose enough to say precisely what is wrong.
type wireEvent struct {
	ID        *string         `json:"id"`
	Type      *string         `json:"type"`
	App       json.RawMessage `json:"app"`
	Time      *string         `json:"time"`
	User      *string         `json:"user"`
	Platform  *string         `json:"platform"`
	Channel   *string         `json:"channel"`
	Count     json.RawMessage `json:"count"`
	Op        *string         `json:"op"`
	Group     *string         `json:"group"`
	GroupType *string         `json:"group_type"`
	Media     *string         `json:"media"`
	Seconds   json.RawMessage `json:"seconds"`
	Call      *string         `json:"call"`
	Edition   *string         `json:"edition"`
}

// DecodeEvent parses one JSON event and checks it against contract v1.
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
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return Event{}, &InvalidError{Reason: "malformed JSON: " + jsonReason(err)}
	}
	var e Event
	var err error
	if e.ID, err = requireString("id", w.ID, MaxIDBytes); err != nil {
		return Event{}, err
	}
	if w.Type == nil {
		return Event{}, invalid("type", "required")
	}
	e.Type = EventType(*w.Type)
	if e.App, err = parseApp(w.App); err != nil {
		return Event{}, err
	}
	if w.Time == nil {
		return Event{}, invalid("time", "required")
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, *w.Time); err != nil {
		return Event{}, invalid("time", "must be RFC 3339 with an offset, e.g. 2026-11-25T21:00:00+08:00")
	}
	if w.User != nil {
		if e.User, err = requireString("user", w.User, MaxUserBytes); err != nil {
			return Event{}, err
		}
	}
	switch e.Type {
	case Login:
		if e.User == "" {
			return Event{}, invalid("user", "required for login")
		}
		if w.Platform != nil {
			if e.Platform, err = oneOf("platform", w.Platform, Platforms); err != nil {
				return Event{}, err
			}
		}
	case Message:
		if e.User == "" {
			return Event{}, invalid("user", "required for message (the sender)")
		}
		if e.Channel, err = oneOf("channel", w.Channel, Channels); err != nil {
			return Event{}, err
		}
		e.Count = 1
		if len(w.Count) > 0 && !bytes.Equal(w.Count, []byte("null")) {
			if e.Count, err = parseInt("count", w.Count, 1); err != nil {
				return Event{}, err
			}
		}
	case Group:
		if e.Op, err = oneOf("op", w.Op, GroupOps); err != nil {
			return Event{}, err
		}
		if e.Group, err = requireString("group", w.Group, MaxIDBytes); err != nil {
			return Event{}, err
		}
		if e.GroupType, err = oneOf("group_type", w.GroupType, GroupTypes); err != nil {
			return Event{}, err
		}
	case Call:
		if e.User == "" {
			return Event{}, invalid("user", "required for call")
		}
		if e.Media, err = oneOf("media", w.Media, Medias); err != nil {
			return Event{}, err
		}
		if len(w.Seconds) == 0 || bytes.Equal(w.Seconds, []byte("null")) {
			return Event{}, invalid("seconds", "required for call")
		}
		if e.Seconds, err = parseInt("seconds", w.Seconds, 0); err != nil {
			return Event{}, err
		}
		if w.Call != nil {
			if e.CallID, err = requireString("call", w.Call, MaxIDBytes); err != nil {
				return Event{}, err
			}
		}
	case Plan:
		if e.Edition, err = oneOf("edition", w.Edition, Editions); err != nil {
			return Event{}, err
		}
	default:
		return Event{}, invalid("type", "must be one of login, message, group, call, plan; got %q", truncate(*w.Type))
	}
	return e, nil
}

// Validate checks an Event built in code against contract v1, by the same
// rules as DecodeEvent.
func (e *Event) Validate() error {
	b, err := json.Marshal(e)
	if err != nil {
		return &InvalidError{Reason: err.Error()}
	}
	_, err = DecodeEvent(b)
	return err
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

func requireString(field string, v *string, max int) (string, error) {
	if v == nil || *v == "" {
		return "", invalid(field, "required, 1 to %d bytes", max)
	}
	if len(*v) > max {
		return "", invalid(field, "too long: %d bytes, at most %d", len(*v), max)
	}
	return *v, nil
}

func oneOf(field string, v *string, allowed []string) (string, error) {
	if v == nil {
		return "", invalid(field, "required, one of %v", allowed)
	}
	for _, a := range allowed {
		if *v == a {
			return a, nil
		}
	}
	return "", invalid(field, "must be one of %v; got %q", allowed, truncate(*v))
}

func parseApp(raw json.RawMessage) (uint32, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, invalid("app", "required")
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || n < 1 || n > MaxAppID {
		return 0, invalid("app", "must be an integer SDKAppID in 1..%d; got %s", uint64(MaxAppID), truncate(string(raw)))
	}
	return uint32(n), nil
}

func parseInt(field string, raw json.RawMessage, min int64) (int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < min {
		return 0, invalid(field, "must be an integer >= %d; got %s", min, truncate(string(raw)))
	}
	return n, nil
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
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s: must be %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

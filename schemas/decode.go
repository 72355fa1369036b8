package schemas

import (
	"encoding/binary"
	"math/bits"
	"time"
	"unicode/utf8"
)

// Field indexes of the fast decoder.
const (
	fID = iota
	fType
	fApp
	fTime
	fUser
	fPlatform
	fChannel
	fCount
	fOp
	fGroup
	fGroupType
	fMedia
	fSeconds
	fCall
	fEdition
	nFields
)

var fieldNames = [nFields]string{"id", "type", "app", "time", "user", "platform", "channel", "count",
	"op", "group", "group_type", "media", "seconds", "call", "edition"}

const numericFields = 1<<fApp | 1<<fCount | 1<<fSeconds

// decodeFast decodes the common form of a valid event without reflection
// and with one allocation: a flat JSON object whose keys are the contract's
// field names as written, each at most once, whose string values have no
// escapes and are valid UTF-8, whose numbers are plain non-negative
// integers, and whose unknown fields hold strings, numbers or literals. For
// anything else, and for every invalid event, it returns ok == false and
// DecodeEvent takes the encoding/json path, so results and error reasons
// stay exactly those of decodeStd (FuzzDecodeFast checks it).
func decodeFast(data []byte) (e Event, ok bool) {
	var at [nFields][2]int32 // value of each field: [start, end) of a string's content or a number
	var seen uint32
	n := len(data)
	if n > 1<<20 {
		return Event{}, false
	}
	i := skipSpace(data, 0)
	if i >= n || data[i] != '{' {
		return Event{}, false
	}
	i = skipSpace(data, i+1)
	for {
		// Key: plain ASCII, no escapes.
		if i >= n || data[i] != '"' {
			return Event{}, false
		}
		ks := i + 1
		k := ks
		for ; k < n && data[k] != '"'; k++ {
			if c := data[k]; c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				return Event{}, false
			}
		}
		if k >= n {
			return Event{}, false
		}
		f := fieldIndex(data[ks:k])
		i = skipSpace(data, k+1)
		if i >= n || data[i] != ':' {
			return Event{}, false
		}
		i = skipSpace(data, i+1)
		if i >= n {
			return Event{}, false
		}
		switch {
		case f == unknownField:
			if i = skipScalar(data, i); i < 0 {
				return Event{}, false
			}
		case f < 0 || seen&(1<<f) != 0: // a key encoding/json folds onto a field, or a repeat
			return Event{}, false
		case numericFields&(1<<f) != 0:
			seen |= 1 << f
			end := scanUint(data, i)
			if end < 0 {
				return Event{}, false
			}
			at[f] = [2]int32{int32(i), int32(end)}
			i = end
		default:
			seen |= 1 << f
			if data[i] != '"' {
				return Event{}, false
			}
			end := scanPlainString(data, i+1)
			if end < 0 {
				return Event{}, false
			}
			at[f] = [2]int32{int32(i + 1), int32(end)}
			i = end + 1
		}
		i = skipSpace(data, i)
		if i >= n {
			return Event{}, false
		}
		if data[i] == ',' {
			i = skipSpace(data, i+1)
			continue
		}
		if data[i] != '}' {
			return Event{}, false
		}
		if skipSpace(data, i+1) != n {
			return Event{}, false
		}
		break
	}

	has := func(f int) bool { return seen&(1<<f) != 0 }
	val := func(f int) []byte { return data[at[f][0]:at[f][1]] }
	str := func(f, max int) bool { l := at[f][1] - at[f][0]; return has(f) && l >= 1 && int(l) <= max }
	// The checks of decodeStd, in its order; any failure goes back to it for the reason.
	if !str(fID, MaxIDBytes) || !has(fType) {
		return Event{}, false
	}
	typ := eventType(val(fType))
	if typ == "" || !has(fApp) {
		return Event{}, false
	}
	app, okApp := parseUintBytes(val(fApp))
	if !okApp || app < 1 || app > MaxAppID || !has(fTime) {
		return Event{}, false
	}
	e.Type, e.App = typ, uint32(app)
	if e.Time, ok = parseRFC3339(val(fTime)); !ok {
		return Event{}, false
	}
	if has(fUser) && !str(fUser, MaxUserBytes) {
		return Event{}, false
	}
	// Every other contract field present must be valid, used by the type or
	// not (as in decodeStd and the JSON Schema).
	for f := fPlatform; f < nFields; f++ {
		if !has(f) {
			continue
		}
		valid := true
		switch f {
		case fPlatform:
			valid = enum(val(f), Platforms) != ""
		case fChannel:
			valid = enum(val(f), Channels) != ""
		case fOp:
			valid = enum(val(f), GroupOps) != ""
		case fGroupType:
			valid = enum(val(f), GroupTypes) != ""
		case fMedia:
			valid = enum(val(f), Medias) != ""
		case fEdition:
			valid = enum(val(f), Editions) != ""
		case fGroup, fCall:
			valid = str(f, MaxIDBytes)
		case fCount:
			c, ok := parseUintBytes(val(f))
			valid = ok && c >= 1 && c <= 1<<63-1
		case fSeconds:
			s, ok := parseUintBytes(val(f))
			valid = ok && s <= 1<<63-1
		}
		if !valid {
			return Event{}, false
		}
	}
	// The strings the event keeps share one allocation.
	keep := [...]int{fID, fUser, fGroup, fCall}
	switch typ {
	case Login:
		if !has(fUser) {
			return Event{}, false
		}
		if has(fPlatform) {
			if e.Platform = enum(val(fPlatform), Platforms); e.Platform == "" {
				return Event{}, false
			}
		}
		keep[2], keep[3] = -1, -1
	case Message:
		if !has(fUser) {
			return Event{}, false
		}
		if e.Channel = enum(val(fChannel), Channels); e.Channel == "" {
			return Event{}, false
		}
		e.Count = 1
		if has(fCount) {
			c, ok := parseUintBytes(val(fCount))
			if !ok || c < 1 || c > 1<<63-1 {
				return Event{}, false
			}
			e.Count = int64(c)
		}
		keep[2], keep[3] = -1, -1
	case Group:
		if e.Op = enum(val(fOp), GroupOps); e.Op == "" {
			return Event{}, false
		}
		if !str(fGroup, MaxIDBytes) {
			return Event{}, false
		}
		if e.GroupType = enum(val(fGroupType), GroupTypes); e.GroupType == "" {
			return Event{}, false
		}
		keep[3] = -1
	case Call:
		if !has(fUser) {
			return Event{}, false
		}
		if e.Media = enum(val(fMedia), Medias); e.Media == "" || !has(fSeconds) {
			return Event{}, false
		}
		s, ok := parseUintBytes(val(fSeconds))
		if !ok || s > 1<<63-1 {
			return Event{}, false
		}
		e.Seconds = int64(s)
		if has(fCall) && !str(fCall, MaxIDBytes) {
			return Event{}, false
		}
		keep[2] = -1
	case Plan:
		if e.Edition = enum(val(fEdition), Editions); e.Edition == "" {
			return Event{}, false
		}
		keep[2], keep[3] = -1, -1
	}
	var buf [4 * MaxIDBytes]byte
	var b []byte = buf[:0]
	for _, f := range keep {
		if f >= 0 && has(f) {
			b = append(b, val(f)...)
		}
	}
	all := string(b)
	dst := [...]*string{&e.ID, &e.User, &e.Group, &e.CallID}
	for j, f := range keep {
		if f >= 0 && has(f) {
			l := int(at[f][1] - at[f][0])
			*dst[j], all = all[:l], all[l:]
		}
	}
	return e, true
}

const (
	unknownField = -1 // not a field of the contract: ignored
	foldedField  = -2 // matches a field only case-insensitively
)

// fieldIndex returns the field a key names exactly, unknownField, or
// foldedField for a key encoding/json would match case-insensitively.
func fieldIndex(key []byte) int {
	switch string(key) {
	case "id":
		return fID
	case "type":
		return fType
	case "app":
		return fApp
	case "time":
		return fTime
	case "user":
		return fUser
	case "platform":
		return fPlatform
	case "channel":
		return fChannel
	case "count":
		return fCount
	case "op":
		return fOp
	case "group":
		return fGroup
	case "group_type":
		return fGroupType
	case "media":
		return fMedia
	case "seconds":
		return fSeconds
	case "call":
		return fCall
	case "edition":
		return fEdition
	}
	for _, name := range fieldNames {
		if equalFoldASCII(key, name) {
			return foldedField
		}
	}
	return unknownField
}

func equalFoldASCII(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func eventType(v []byte) EventType {
	switch string(v) {
	case "login":
		return Login
	case "message":
		return Message
	case "group":
		return Group
	case "call":
		return Call
	case "plan":
		return Plan
	}
	return ""
}

// enum returns the allowed value v is, or "".
func enum(v []byte, allowed []string) string {
	for _, a := range allowed {
		if string(v) == a {
			return a
		}
	}
	return ""
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanPlainString returns the index of the quote that ends the string whose
// content starts at i, or -1 if the string has an escape, a control
// character or invalid UTF-8, or does not end.
func scanPlainString(data []byte, i int) int {
	ascii := true
	start := i
	for ; i < len(data); i++ {
		// Eight bytes at a time while none is special (SWAR: a byte's high
		// bit is set in m for a quote, a backslash, a control character or
		// a non-ASCII byte; the lowest one found is exact).
		for i+8 <= len(data) {
			const lo, hi = 0x0101010101010101, 0x8080808080808080
			x := binary.LittleEndian.Uint64(data[i:])
			q, b := x^(lo*'"'), x^(lo*'\\')
			m := ((q-lo)&^q | (b-lo)&^b | (x-lo*0x20)&^x | x) & hi
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(data) {
			break
		}
		c := data[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(data[start:i]) {
				return -1
			}
			return i
		case c == '\\' || c < 0x20:
			return -1
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return -1
}

// scanUint returns the end of the plain non-negative integer (no sign,
// fraction, exponent or leading zero) at i, or -1.
func scanUint(data []byte, i int) int {
	start := i
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	switch {
	case i == start, i-start > 1 && data[start] == '0', i-start > 20:
		return -1
	case i < len(data) && (data[i] == '.' || data[i] == 'e' || data[i] == 'E'):
		return -1
	}
	return i
}

// parseUintBytes parses what scanUint accepted.
func parseUintBytes(v []byte) (uint64, bool) {
	var n uint64
	for _, c := range v {
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, len(v) > 0
}

// skipScalar returns the end of the JSON string, number, true, false or null
// at i, or -1 for anything else (objects and arrays included) or bad syntax.
func skipScalar(data []byte, i int) int {
	switch c := data[i]; {
	case c == '"':
		for i++; i < len(data); i++ {
			switch c := data[i]; {
			case c == '"':
				return i + 1
			case c < 0x20 || c >= utf8.RuneSelf:
				return -1 // decodeStd checks non-ASCII text
			case c == '\\':
				i++
				if i >= len(data) {
					return -1
				}
				switch data[i] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				default: // \u escapes too: decodeStd checks surrogates
					return -1
				}
			}
		}
		return -1
	case c == '-' || '0' <= c && c <= '9':
		return skipNumber(data, i)
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
				return i + len(lit)
			}
		}
		return -1
	}
}

// skipNumber returns the end of the JSON number at i, or -1.
func skipNumber(data []byte, i int) int {
	digits := func(i int) int {
		start := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
	if data[i] == '-' {
		i++
	}
	if i < len(data) && data[i] == '0' {
		i++
	} else if i = digits(i); i < 0 {
		return -1
	}
	if i < len(data) && data[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// parseRFC3339 parses what the fast path of time.Parse(time.RFC3339Nano, s)
// accepts, with the same result (time/format_rfc3339.go); ok is false for
// anything else, which time.Parse may still accept.
func parseRFC3339(s []byte) (time.Time, bool) {
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

func isLeap(year int) bool { return year%4 == 0 && (year%100 != 0 || year%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch returns the days from 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's days_from_civil).
func daysSinceEpoch(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

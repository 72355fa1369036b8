package schemas

import (
	"encoding/binary"
	"math/bits"
	"strings"
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
	var t EventText
	if !decodeFastText(data, &e, &t) {
		return Event{}, false
	}
	t.SetStrings(&e)
	return e, true
}

// decodeFastText is decodeFast without the copies of the id, user, group
// and call, which it leaves in data for t. It takes e and t zero, and
// leaves them zero when it returns false.
func decodeFastText(data []byte, e *Event, t *EventText) bool {
	o := object{data: data}
	if !o.scan() || !o.event(e) {
		*e = Event{}
		return false
	}
	t.ID, t.User = o.text(fID), o.text(fUser)
	switch e.Type {
	case Group:
		t.Group = o.text(fGroup)
	case Call:
		t.CallID = o.text(fCall)
	}
	return true
}

// EventText holds the id, user, group and call of an event decoded by
// DecodeEventText: parts of its input, valid while the input is.
type EventText struct{ ID, User, Group, CallID []byte }

// DecodeEventText is DecodeEvent without the copies of the event's id,
// user, group and call: they are empty in e, and t holds them. A caller
// that needs only some of them as strings saves the allocation of the
// others; t.SetStrings(&e) makes e what DecodeEvent returns.
func DecodeEventText(data []byte) (e Event, t EventText, err error) {
	if decodeFastText(data, &e, &t) {
		return e, t, nil
	}
	if e, err = decodeStd(data); err != nil {
		return Event{}, EventText{}, err
	}
	t = EventText{ID: []byte(e.ID), User: []byte(e.User), Group: []byte(e.Group), CallID: []byte(e.CallID)}
	e.ID, e.User, e.Group, e.CallID = "", "", "", ""
	return e, t, nil
}

// SetStrings sets e's id, user, group and call from t, sharing one
// allocation.
func (t *EventText) SetStrings(e *Event) {
	var b strings.Builder
	b.Grow(len(t.ID) + len(t.User) + len(t.Group) + len(t.CallID))
	b.Write(t.ID)
	b.Write(t.User)
	b.Write(t.Group)
	b.Write(t.CallID)
	all := b.String()
	e.ID, all = all[:len(t.ID)], all[len(t.ID):]
	e.User, all = all[:len(t.User)], all[len(t.User):]
	e.Group, e.CallID = all[:len(t.Group)], all[len(t.Group):]
}

// object is what decodeFast found in an event: where the value of each
// contract field present is, [start, end) of a string's content or of a
// number.
type object struct {
	data   []byte
	at     [nFields][2]int32
	seen   uint32         // bit f: field f is present
	choice [nFields]uint8 // of a field with allowed values: 1 + the index of its value, 0 unknown
}

// allowed lists the values of the fields that have a set of them.
var allowed = [nFields][]string{fType: eventTypes, fPlatform: Platforms, fChannel: Channels, fOp: GroupOps,
	fGroupType: GroupTypes, fMedia: Medias, fEdition: Editions}

// enum returns the value of field f, one of its allowed values, or "".
func (o *object) enum(f int) string {
	if c := o.choice[f]; c > 0 {
		return allowed[f][c-1]
	}
	return enum(o.val(f), allowed[f])
}

func (o *object) has(f int) bool { return o.seen&(1<<f) != 0 }

func (o *object) val(f int) []byte { return o.data[o.at[f][0]:o.at[f][1]] }

// str reports whether string field f is present with 1 to max bytes.
func (o *object) str(f, max int) bool {
	l := int(o.at[f][1] - o.at[f][0])
	return o.has(f) && l >= 1 && l <= max
}

// scan finds the fields of the event, a flat JSON object, or returns false
// for anything it leaves to decodeStd.
func (o *object) scan() bool {
	data := o.data
	n := len(data)
	if n > 1<<20 {
		return false
	}
	i := skipSpace(data, 0)
	if i >= n || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	for {
		f, j := scanKey(data, i)
		if j < 0 {
			return false
		}
		if i = o.scanValue(f, j); i < 0 {
			return false
		}
		if i = skipSpace(data, i); i >= n {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == n
		default:
			return false
		}
	}
}

// scanKey reads the key at i, plain ASCII without escapes, and its colon:
// it returns the field the key names and where its value starts, or -1.
func scanKey(data []byte, i int) (f, next int) {
	if i >= len(data) || data[i] != '"' {
		return 0, -1
	}
	var k int // the key's closing quote
	if f = knownKey(data[i+1:]); f >= 0 {
		k = i + len(fieldNames[f]) + 1
	} else {
		if k = special(data, i+1); k >= len(data) || data[k] != '"' {
			return 0, -1
		}
		f = fieldIndex(data[i+1 : k])
	}
	i = skipSpace(data, k+1)
	if i >= len(data) || data[i] != ':' {
		return 0, -1
	}
	if i = skipSpace(data, i+1); i >= len(data) {
		return 0, -1
	}
	return f, i
}

// knownKey returns the field whose name and closing quote rest starts
// with, or -1: the quick way for the contract's keys, comparing eight bytes
// at once.
func knownKey(rest []byte) int {
	if len(rest) < 8 || rest[0] >= utf8.RuneSelf {
		return -1
	}
	x := binary.LittleEndian.Uint64(rest)
	for _, k := range keysByFirst[rest[0]] {
		if x&k.mask == k.word && (len(k.quoted) <= 8 || len(rest) >= len(k.quoted) && string(rest[8:len(k.quoted)]) == k.quoted[8:]) {
			return int(k.f)
		}
	}
	return -1
}

// quotedKey is a field's name with its closing quote, and its first eight
// bytes as knownKey compares them.
type quotedKey struct {
	f          int8
	quoted     string
	word, mask uint64
}

// keysByFirst lists the fields by the first byte of their names.
var keysByFirst = func() (by [utf8.RuneSelf][]quotedKey) {
	for f, name := range fieldNames {
		k := quotedKey{f: int8(f), quoted: name + `"`}
		var b [8]byte
		n := copy(b[:], k.quoted)
		k.word = binary.LittleEndian.Uint64(b[:])
		k.mask = 1<<(8*n) - 1
		if n == 8 {
			k.mask = 1<<64 - 1
		}
		by[name[0]] = append(by[name[0]], k)
	}
	return by
}()

// scanValue reads the value of field f at i (i < len(data)) and returns
// where it ends, or -1.
func (o *object) scanValue(f, i int) int {
	data := o.data
	switch {
	case f == unknownField:
		return skipScalar(data, i)
	case f < 0 || o.has(f): // a key encoding/json folds onto a field, or a repeat
		return -1
	}
	o.seen |= 1 << f
	if numericFields&(1<<f) != 0 {
		end := scanUint(data, i)
		if end < 0 {
			return -1
		}
		o.at[f] = [2]int32{int32(i), int32(end)}
		return end
	}
	if data[i] != '"' {
		return -1
	}
	if values := allowed[f]; values != nil {
		// An allowed value and its closing quote: no need to scan it.
		rest := data[i+1:]
		for j, v := range values {
			if len(rest) > len(v) && rest[len(v)] == '"' && string(rest[:len(v)]) == v {
				o.choice[f] = uint8(j + 1)
				o.at[f] = [2]int32{int32(i + 1), int32(i + 1 + len(v))}
				return i + len(v) + 2
			}
		}
	}
	end := scanPlainString(data, i+1)
	if end < 0 {
		return -1
	}
	o.at[f] = [2]int32{int32(i + 1), int32(end)}
	return end + 1
}

// event checks the fields as decodeStd does and sets those of e but the
// id, user, group and call (EventText holds them). Any failure leaves the
// event to decodeStd, which words the reason; so the order of the checks
// does not matter. The caller clears e when it returns false.
func (o *object) event(e *Event) bool {
	const required = 1<<fID | 1<<fType | 1<<fApp | 1<<fTime
	if o.seen&required != required || !o.str(fID, MaxIDBytes) || o.has(fUser) && !o.str(fUser, MaxUserBytes) {
		return false
	}
	if e.Type = EventType(o.enum(fType)); e.Type == "" {
		return false
	}
	app, ok := parseUintBytes(o.val(fApp))
	if !ok || app < 1 || app > MaxAppID {
		return false
	}
	e.App = uint32(app)
	if e.Time, ok = parseRFC3339(o.val(fTime)); !ok {
		return false
	}
	opt, ok := o.options()
	return ok && opt.setTyped(e, o)
}

// options are the values of the contract fields besides id, type, app,
// time and user.
type options struct {
	platform, channel, op, groupType, media, edition string
	count, seconds                                   uint64
}

// options checks every other contract field present, used by the event's
// type or not (as decodeStd and the JSON Schema do), and returns their
// values.
func (o *object) options() (opt options, ok bool) {
	for m := o.seen &^ (1<<fPlatform - 1); m != 0; m &= m - 1 {
		f := bits.TrailingZeros32(m)
		v := o.val(f)
		switch f {
		case fPlatform:
			opt.platform = o.enum(f)
			ok = opt.platform != ""
		case fChannel:
			opt.channel = o.enum(f)
			ok = opt.channel != ""
		case fOp:
			opt.op = o.enum(f)
			ok = opt.op != ""
		case fGroupType:
			opt.groupType = o.enum(f)
			ok = opt.groupType != ""
		case fMedia:
			opt.media = o.enum(f)
			ok = opt.media != ""
		case fEdition:
			opt.edition = o.enum(f)
			ok = opt.edition != ""
		case fGroup, fCall:
			ok = o.str(f, MaxIDBytes)
		case fCount:
			opt.count, ok = parseUintBytes(v)
			ok = ok && opt.count >= 1 && opt.count <= maxInt64
		case fSeconds:
			opt.seconds, ok = parseUintBytes(v)
			ok = ok && opt.seconds <= maxInt64
		}
		if !ok {
			return options{}, false
		}
	}
	return opt, true
}

// setTyped checks what e's type requires and sets the fields it uses
// besides the strings, as decodeStd does.
func (opt *options) setTyped(e *Event, o *object) bool {
	switch e.Type {
	case Login:
		e.Platform = opt.platform
		return o.has(fUser)
	case Message:
		e.Channel, e.Count = opt.channel, 1
		if o.has(fCount) {
			e.Count = int64(opt.count)
		}
		return o.has(fUser) && e.Channel != ""
	case Group:
		e.Op, e.GroupType = opt.op, opt.groupType
		return e.Op != "" && o.has(fGroup) && e.GroupType != ""
	case Call:
		e.Media, e.Seconds = opt.media, int64(opt.seconds)
		return o.has(fUser) && e.Media != "" && o.has(fSeconds)
	case Plan:
		e.Edition = opt.edition
		return e.Edition != ""
	}
	return false
}

// text returns the value of string field f, or nil when it is absent.
func (o *object) text(f int) []byte {
	if !o.has(f) {
		return nil
	}
	return o.val(f)
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
	start, ascii := i, true
	for {
		if i = special(data, i); i >= len(data) {
			return -1
		}
		switch c := data[i]; {
		case c == '"':
			if !ascii && !utf8.Valid(data[start:i]) {
				return -1
			}
			return i
		case c == '\\' || c < 0x20:
			return -1
		}
		ascii = false
		i++
	}
}

// special returns the index of the first quote, backslash, control
// character or non-ASCII byte from i on, or len(data).
func special(data []byte, i int) int {
	// Eight bytes at a time (SWAR: a byte's high bit is set in m for a
	// quote, a backslash, a control character or a non-ASCII byte; the
	// lowest one found is exact).
	for ; i+8 <= len(data); i += 8 {
		const lo, hi = 0x0101010101010101, 0x8080808080808080
		x := binary.LittleEndian.Uint64(data[i:])
		q, b := x^(lo*'"'), x^(lo*'\\')
		if m := ((q-lo)&^q | (b-lo)&^b | (x-lo*0x20)&^x | x) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(data); i++ {
		if c := data[i]; c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return i
		}
	}
	return i
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

// parseUintBytes parses what scanUint accepted: 1 to 20 digits.
func parseUintBytes(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range v[:min(len(v), 19)] { // 19 digits never overflow
		n = n*10 + uint64(c-'0')
	}
	if len(v) == 20 {
		hi, lo := bits.Mul64(n, 10)
		sum, carry := bits.Add64(lo, uint64(v[19]-'0'), 0)
		if hi != 0 || carry != 0 {
			return 0, false
		}
		n = sum
	}
	return n, true
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
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	year := digits2(s[0:2])*100 + digits2(s[2:4])
	month := digits2(s[5:7])
	if year < 0 || month < 1 || month > 12 {
		return time.Time{}, false
	}
	day, hour, minute, sec := digits2(s[8:10]), digits2(s[11:13]), digits2(s[14:16]), digits2(s[17:19])
	if day < 1 || day > daysIn(month, year) || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	s = s[19:]
	var nsec int
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		// As time.parseNanoseconds: nine digits at most count.
		n := 1
		for ; n < len(s) && isDigit(s[n]); n++ {
			if n <= 9 {
				nsec = nsec*10 + int(s[n]-'0')
			}
		}
		nsec *= pow10[10-min(n, 10)]
		s = s[n:]
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	if len(s) == 1 && s[0] == 'Z' {
		return time.Unix(unix, int64(nsec)).UTC(), true
	}
	if len(s) != len("-07:00") {
		return time.Time{}, false
	}
	hr, mm := digits2(s[1:3]), digits2(s[4:6])
	if hr < 0 || hr > 23 || mm < 0 || mm > 59 || s[0] != '-' && s[0] != '+' || s[3] != ':' {
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

var pow10 = [...]int{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits2 returns the number two decimal digits spell, or -1<<20 for
// anything else: negative even when multiplied by 100 and added to.
func digits2(s []byte) int {
	a, b := int(s[0])-'0', int(s[1])-'0'
	if uint(a) > 9 || uint(b) > 9 {
		return -1 << 20
	}
	return a*10 + b
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

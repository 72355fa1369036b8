package aggregate

import (
	"encoding/binary"
	"strconv"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

// Counters are one app's usage on one calendar day, from one source partition.
type Counters struct {
	Logins            uint64
	MessagesC2C       uint64
	MessagesGroup     uint64
	MessagesCommunity uint64
	MessagesLive      uint64
	GroupsCreated     uint64
	GroupsDissolved   uint64
	CallsAudio        uint64
	CallsVideo        uint64
	CallSecondsAudio  uint64
	CallSecondsVideo  uint64
	Duplicates        uint64
}

// dayKey names an app's calendar day.
type dayKey struct {
	app uint32
	day schemas.Day
}

// dayState is what a partition knows of one app's day. The fields every
// event reads or writes come first, in the cache line of the first counters.
type dayState struct {
	// version is the partition offset up to which (exclusive) c is complete,
	// as stored in ClickHouse or about to be. An event at an offset below it
	// is already in c: a replay, not counted again.
	version uint64
	used    uint64 // the flush count when an event last touched the day
	dirty   bool

	c Counters

	// sketch is this writer's HLL of the day's users; sketchGen numbers the
	// sketches made for the day, so a new one never overwrites an older row.
	sketch      *hyperloglog.Sketch
	sketchGen   int
	sketchDirty bool
}

// userRow is a user_days row to write.
type userRow struct {
	app  uint32
	day  schemas.Day
	user string
}

// idRow is an event_ids row to write.
type idRow struct {
	app    uint32
	day    schemas.Day
	id     xxh3.Uint128
	offset uint64
}

// deadLetter is an invalid event to publish on the DLQ.
type deadLetter struct {
	offset int64
	key    []byte
	value  []byte
	app    uint32
	reason string
}

// Outcome says what Apply did with an event.
type Outcome int

// Outcomes of Apply.
const (
	Counted   Outcome = iota // new usage
	Replayed                 // already in the stored counters
	Duplicate                // an (app, id) seen at another offset
	Rejected                 // invalid: to the DLQ
	Deferred                 // its id may be in event_ids: decided at the next flush
)

// partitionState folds the events of one source partition. It is owned by
// one goroutine.
type partitionState struct {
	partition int32
	loc       *time.Location
	dayOf     *schemas.Days // the days of loc
	minDay    schemas.Day   // events before it are too old
	maxTime   time.Time     // events after it are too far in the future
	maxFuture time.Duration
	clock     func() time.Time

	days map[dayKey]*dayState
	// recent caches days' entries by key, so that most events find their
	// day without a map lookup. Whatever removes a day from days or
	// replaces it must clear recent (evict does; the loads at opening run
	// before any event).
	recent *[recentDays]recentDay
	// ids holds every event id of the accepted window with the day it was
	// first seen on. An id seen again at another offset is a duplicate;
	// replay holds the first offsets of the ids stored in ClickHouse at or
	// after the position the partition was opened at, whose events are
	// read again (replayed), not repeated.
	//
	// With a filter (Config.DedupFilterBits), ids holds only the ids not
	// yet written to event_ids, and filter the others, per day; an event
	// whose id the filter may hold waits in parked for the next flush,
	// which asks event_ids (see resolveParked).
	ids    *idSet
	replay map[xxh3.Uint128]uint64
	// plans holds the content of every plan change stored or pending, by
	// its (app, id): see checkPlan.
	plans  map[xxh3.Uint128]uint64
	filter *idFilter
	parked []parkedEvent
	// users keeps repeated logins out of user_days and the sketches. It is
	// an optimisation only: forgetting a user costs a write, never
	// correctness.
	users *userCache
	// days holds every stored day from loadedFrom on; an older day missing
	// from it is fetched with load.
	loadedFrom schemas.Day
	idsSwept   schemas.Day // minDay of the last sweep of ids in evict
	load       func(dayKey) (Counters, uint64, error)

	next      uint64 // next position to read: Kafka offset + base
	base      int64  // the partition epoch's offset_base
	epoch     uint32 // the partition's epoch in partition_epochs (0: none), in its dead letters' keys
	stored    int64  // the position stored in ClickHouse when loaded or last written; -1: none
	topicID   string // the Kafka topic ID read; "" unknown
	flushes   uint64 // evict calls so far: one per flush
	sketchSeq int    // numbers this writer's sketches
	// writer names this state's sketches in user_sketches: unique per
	// process and opening of the partition, so that the sketches of a
	// partition opened again (numbered from 1 again) never replace those of
	// an earlier opening.
	writer string

	pendingUsers []userRow
	pendingIDs   []idRow
	pendingPlans []schemas.Event
	pendingLive  []schemas.Event // live-streaming group changes
	pendingDLQ   []deadLetter
}

func newPartitionState(partition int32, loc *time.Location) *partitionState {
	return &partitionState{
		partition: partition,
		loc:       loc,
		dayOf:     schemas.NewDays(loc),
		days:      map[dayKey]*dayState{},
		recent:    new([recentDays]recentDay),
		ids:       newIDSet(0),
		replay:    map[xxh3.Uint128]uint64{},
		plans:     map[xxh3.Uint128]uint64{},
		users:     newUserCache(userCacheBuckets),
		stored:    -1,
	}
}

// free returns the memory of the state's tables; s is not used after.
func (s *partitionState) free() {
	s.ids.mem.free()
	if s.filter != nil {
		s.filter.free()
	}
	s.users.mem.free()
}

// idHash is the 128-bit hash of an (app, id): collisions are negligible
// (about 1.5e-25 for 10M ids).
func idHash[T string | []byte](app uint32, id T) xxh3.Uint128 { return prefixHash(uint64(app), 4, id) }

// userKey is the hash of an app's user on a day, for the user cache.
func userKey[T string | []byte](app uint32, day schemas.Day, user T) xxh3.Uint128 {
	return prefixHash(uint64(app)|uint64(uint32(day))<<32, 8, user)
}

// prefixHash hashes the first n bytes of prefix (little-endian) followed by
// s, which the contract bounds (schemas.MaxIDBytes, schemas.MaxUserBytes).
func prefixHash[T string | []byte](prefix uint64, n int, s T) xxh3.Uint128 {
	var buf [8 + max(schemas.MaxIDBytes, schemas.MaxUserBytes)]byte
	binary.LittleEndian.PutUint64(buf[:8], prefix)
	m := copy(buf[n:], s)
	return xxh3.Hash128(buf[:n+m])
}

// Apply folds one message at offset of the partition into the state.
func (s *partitionState) Apply(offset int64, key, value []byte) (Outcome, error) {
	o := uint64(offset + s.base)
	s.next = o + 1
	// The event's strings stay in value: only those kept are copied.
	e, text, err := schemas.DecodeEventText(value)
	var day schemas.Day
	if err == nil {
		err = checkKey(key, e.App)
	}
	if err == nil {
		day = s.dayOf.Of(e.Time)
		err = s.checkTime(e.Time, day, e.Type == schemas.Plan)
	}
	if err != nil {
		s.reject(offset, key, value, e.App, err.Error())
		return Rejected, nil
	}
	if e.Type == schemas.Plan {
		// Plan events are state, not usage: accepted at any age, written to
		// plan_changes (a set, so a replay adds nothing), never counted and
		// never in the dedup window. The rollup sees them in its plan mark.
		text.SetStrings(&e)
		if why := s.checkPlan(&e); why != "" {
			s.reject(offset, key, value, e.App, why)
			return Rejected, nil
		}
		s.pendingPlans = append(s.pendingPlans, e)
		return Counted, nil
	}
	h := idHash(e.App, text.ID)
	first, seen := s.ids.Get(h)
	if !seen && s.filter != nil && s.filter.MayContain(h) {
		// Perhaps an id already in event_ids: ClickHouse says, for all
		// such events of a flush at once, before the flush (resolve).
		// It outlives value: it keeps its own strings.
		text.SetStrings(&e)
		s.parked = append(s.parked, parkedEvent{offset: o, e: e, h: h, day: day})
		return Deferred, nil
	}
	return s.fold(o, e, &text, h, day, first, seen, seen && s.replayed(h, o))
}

// fold counts an event, given what is known of its id: seen says whether
// it was seen before (first: on which day), replay that it was seen at
// this very offset (the same message, read again).
// text holds the event's strings (e's are empty unless text's are nil);
// day is the event's day.
func (s *partitionState) fold(o uint64, e schemas.Event, text *schemas.EventText, h xxh3.Uint128, day schemas.Day, first schemas.Day, seen, replay bool) (Outcome, error) {
	if seen && !replay {
		st, err := s.day(dayKey{e.App, first})
		if err != nil {
			return 0, err
		}
		if o >= st.version {
			st.c.Duplicates++
			st.dirty = true
		}
		return Duplicate, nil
	}
	// The day first: when loading it fails, nothing has changed and the
	// retry applies the event anew (an id added before would make the
	// retry take the event for a duplicate of itself).
	st, err := s.day(dayKey{e.App, day})
	if err != nil {
		return 0, err
	}
	if !seen {
		s.ids.Add(h, day)
		s.pendingIDs = append(s.pendingIDs, idRow{app: e.App, day: day, id: h, offset: o})
	}
	// Sets are idempotent: replays may add to them again.
	switch e.Type {
	case schemas.Login:
		if text == nil {
			s.addUser(st, e.App, day, []byte(e.User))
		} else {
			s.addUser(st, e.App, day, text.User)
		}
	case schemas.Group:
		if e.GroupType == liveGroupType {
			if text != nil {
				text.SetStrings(&e)
			}
			s.pendingLive = append(s.pendingLive, e)
		}
	}
	if o < st.version {
		return Replayed, nil
	}
	c := &st.c
	switch e.Type {
	case schemas.Login:
		c.Logins++
	case schemas.Message:
		n := uint64(e.Count)
		switch e.Channel {
		case "c2c":
			c.MessagesC2C += n
		case "group":
			c.MessagesGroup += n
		case "community":
			c.MessagesCommunity += n
		case "live":
			c.MessagesLive += n
		}
	case schemas.Group:
		if e.Op == "create" {
			c.GroupsCreated++
		} else {
			c.GroupsDissolved++
		}
	case schemas.Call:
		if e.Media == "audio" {
			c.CallsAudio++
			c.CallSecondsAudio += uint64(e.Seconds)
		} else {
			c.CallsVideo++
			c.CallSecondsVideo += uint64(e.Seconds)
		}
	}
	st.dirty = true
	return Counted, nil
}

// replayed reports whether an id already seen was first seen at offset o:
// the same message, read again after a restart.
func (s *partitionState) replayed(h xxh3.Uint128, o uint64) bool {
	if len(s.replay) == 0 {
		return false
	}
	first, ok := s.replay[h]
	return ok && first == o
}

// checkKey rejects an event whose message key is not its app id in decimal,
// as the contract requires: with another key (or none) its copies may land
// in other partitions, where deduplication cannot see them.
func checkKey(key []byte, app uint32) error {
	if isDecimal(key, app) {
		return nil
	}
	if len(key) == 0 {
		return &schemas.InvalidError{Field: "key", Reason: "missing: the message key must be the app id in decimal (" + strconv.FormatUint(uint64(app), 10) + ")"}
	}
	if len(key) > 40 {
		key = append(key[:40:40], "..."...)
	}
	return &schemas.InvalidError{Field: "key", Reason: strconv.Quote(string(key)) + " does not match app " + strconv.FormatUint(uint64(app), 10) + ": the message key must be the app id in decimal"}
}

// isDecimal reports whether key is app in decimal, as strconv.FormatUint
// writes it (no sign, no leading zero).
func isDecimal(key []byte, app uint32) bool {
	if len(key) == 0 || len(key) > 10 || len(key) > 1 && key[0] == '0' {
		return false
	}
	var n uint64
	for _, c := range key {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + uint64(c-'0')
	}
	return n == uint64(app)
}

// checkTime refuses events too far in the future, and usage events older
// than the accepted window; day is t's day, and anyAge lets a plan event
// through at any age.
func (s *partitionState) checkTime(t time.Time, d schemas.Day, anyAge bool) error {
	if !s.maxTime.IsZero() && t.After(s.maxTime) && s.clock != nil {
		s.maxTime = s.clock().Add(s.maxFuture) // the bound may be a flush old
	}
	if !s.maxTime.IsZero() && t.After(s.maxTime) {
		return &schemas.InvalidError{Field: "time", Reason: "too far in the future: " + t.Format(time.RFC3339) + " is after " + s.maxTime.Format(time.RFC3339)}
	}
	if anyAge && t.Unix() < 0 {
		return &schemas.InvalidError{Field: "time", Reason: "too old: " + t.Format(time.RFC3339) + " is before 1970-01-01T00:00:00Z, the first instant plan_changes holds"}
	}
	if d < s.minDay && !anyAge {
		return &schemas.InvalidError{Field: "time", Reason: "too old: day " + d.String() + " is before the accepted window starting " + s.minDay.String()}
	}
	return nil
}

func (s *partitionState) reject(offset int64, key, value []byte, app uint32, reason string) {
	s.pendingDLQ = append(s.pendingDLQ, deadLetter{
		offset: offset,
		key:    append([]byte(nil), key...),
		value:  append([]byte(nil), value...),
		app:    app,
		reason: reason,
	})
}

func (s *partitionState) addUser(st *dayState, app uint32, day schemas.Day, user []byte) {
	if s.users.Seen(userKey(app, day, user)) {
		return
	}
	s.pendingUsers = append(s.pendingUsers, userRow{app: app, day: day, user: string(user)})
	if st.sketch == nil {
		st.sketch = NewSketch()
		s.sketchSeq++
		st.sketchGen = s.sketchSeq
	}
	st.sketch.InsertHash(xxhash.Sum64(user))
	st.sketchDirty = true
}

// SketchPrecision is the precision of the HyperLogLog sketches of the day's
// users: 2^17 registers once dense, a standard error of 0.29% (about 0.74%
// at p99); below about 100k users a sketch is sparse and near exact.
const SketchPrecision = 17

// NewSketch makes the HyperLogLog sketch the aggregator stores for DAU and
// MAU estimates; sketches of other precisions do not merge with it.
func NewSketch() *hyperloglog.Sketch {
	sk, err := hyperloglog.NewSketch(SketchPrecision, true)
	if err != nil {
		panic(err) // a constant precision within 4…18
	}
	return sk
}

// recentDays is the size of partitionState.recent: 64 KiB, about as many
// apps as carry 80% of the events when their activity is Zipf-skewed.
const (
	recentBits = 12
	recentDays = 1 << recentBits
)

// recentDay is an entry of partitionState.recent; st nil: none.
type recentDay struct {
	k  dayKey
	st *dayState
}

// day returns the state of an app's day, loading it when it is not in memory.
func (s *partitionState) day(k dayKey) (*dayState, error) {
	r := &s.recent[(uint64(k.app)<<32|uint64(uint32(k.day)))*0x9e3779b97f4a7c15>>(64-recentBits)]
	if r.st != nil && r.k == k {
		r.st.used = s.flushes
		return r.st, nil
	}
	st, ok := s.days[k]
	if !ok {
		st = &dayState{}
		if k.day < s.loadedFrom && s.load != nil {
			c, v, err := s.load(k)
			if err != nil {
				return nil, err
			}
			st.c, st.version = c, v
		}
		s.days[k] = st
	}
	st.used = s.flushes
	*r = recentDay{k, st}
	return st, nil
}

// idleFlushes is how many flushes an older day stays in memory after its
// last event, so that late events for it do not load it again every flush.
const idleFlushes = 60

// evict drops clean days older than keepFrom, and the sketches of those days, to bound memory. Their counters are loaded again if a late
// event needs them.
func (s *partitionState) evict(keepFrom schemas.Day) {
	s.flushes++
	s.loadedFrom = max(s.loadedFrom, keepFrom)
	clear(s.recent[:])
	for k, st := range s.days {
		if k.day >= keepFrom || st.dirty || st.sketchDirty || s.flushes-st.used < idleFlushes {
			continue
		}
		delete(s.days, k)
	}
	// Ids come in at minDay or later, so only a new minDay can leave ids
	// to drop: sweeping the whole map at every flush cost more than the
	// flush's inserts.
	if s.minDay == s.idsSwept {
		return
	}
	s.idsSwept = s.minDay
	s.ids.DropBefore(s.minDay)
	if s.filter != nil {
		s.filter.DropBefore(s.minDay)
	}
	for h := range s.replay {
		if _, ok := s.ids.Get(h); !ok {
			delete(s.replay, h)
		}
	}
}

// pending reports whether anything waits to be written.
func (s *partitionState) pending() int {
	return len(s.pendingUsers) + len(s.pendingIDs) + len(s.pendingPlans) + len(s.pendingLive) + len(s.pendingDLQ) + len(s.parked)
}

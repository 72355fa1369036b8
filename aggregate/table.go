package aggregate

import (
	"math/bits"
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

// A slot holds one 128-bit hash with a day in its low 16 bits, so a key keeps
// 111 bits of its hash (bit 16 is always set, which tells a used slot from an
// empty one). A bucket is four slots, one cache line: a lookup costs one
// cache miss, rarely two.
type slot struct{ hi, lo uint64 }

const (
	bucketSlots = 4
	dayBits     = 16
	usedBit     = 1 << dayBits
	dayMask     = usedBit - 1
	keyMask     = ^uint64(usedBit | dayMask)
)

func makeSlot(h xxh3.Uint128, day schemas.Day) slot {
	return slot{h.Hi, h.Lo&keyMask | usedBit | uint64(uint16(day))}
}

func (s slot) same(t slot) bool { return s.hi == t.hi && (s.lo^t.lo)&^dayMask == 0 }

// day returns the slot's day: days are stored modulo 2^16 (179 years), and
// all days in a table lie within a few months of each other.
func (s slot) day(near schemas.Day) schemas.Day {
	return near + schemas.Day(int16(uint16(s.lo)-uint16(near)))
}

// bucketOf maps a hash onto n buckets without a division.
func bucketOf(hi, n uint64) uint64 {
	b, _ := bits.Mul64(hi, n)
	return b
}

// idSet is the set of event ids of a partition's accepted window, each with
// the day it was first seen on: an open-addressing table of 16-byte slots
// (about 19–24 B per id with its free space, against 84 B in a Go map). Its
// memory is mapped outside the Go heap, so the collector neither scans it
// nor lets the heap grow twice its size before collecting.
type idSet struct {
	mem     *slots
	buckets uint64
	n       int
	near    schemas.Day // a day near all the set's days
}

// maxLoad is how full an idSet gets before it grows by a quarter.
const maxLoad = 0.85

func newIDSet(near schemas.Day) *idSet {
	s := &idSet{near: near}
	s.resize(1024)
	return s
}

// Len returns the number of ids in the set.
func (s *idSet) Len() int { return s.n }

// Bytes returns the memory the set holds.
func (s *idSet) Bytes() int { return len(s.mem.s) * int(unsafe.Sizeof(slot{})) }

// Get returns the day an id was first seen on, if it is in the set.
func (s *idSet) Get(h xxh3.Uint128) (schemas.Day, bool) {
	k := makeSlot(h, 0)
	t := s.mem.s
	for b := bucketOf(k.hi, s.buckets); ; b++ {
		if b == s.buckets {
			b = 0
		}
		for _, x := range t[b*bucketSlots : b*bucketSlots+bucketSlots] {
			if x.lo == 0 {
				return 0, false
			}
			if x.same(k) {
				return x.day(s.near), true
			}
		}
	}
}

// Add puts an id not in the set into it.
func (s *idSet) Add(h xxh3.Uint128, day schemas.Day) {
	if s.n == 0 {
		s.near = day
	}
	if float64(s.n+1) > maxLoad*float64(s.buckets*bucketSlots) {
		s.resize(s.buckets + s.buckets/4)
	}
	s.put(makeSlot(h, day))
	s.n++
}

func (s *idSet) put(k slot) {
	t := s.mem.s
	for b := bucketOf(k.hi, s.buckets); ; b++ {
		if b == s.buckets {
			b = 0
		}
		for i := b * bucketSlots; i < b*bucketSlots+bucketSlots; i++ {
			if t[i].lo == 0 {
				t[i] = k
				return
			}
		}
	}
}

// DropBefore removes the ids first seen before day.
func (s *idSet) DropBefore(day schemas.Day) {
	keep := func(k slot) bool { return k.day(s.near) >= day }
	kept := 0
	for _, k := range s.mem.s {
		if k.lo != 0 && keep(k) {
			kept++
		}
	}
	s.rebuild(s.buckets, keep, kept)
	s.near = day
}

// Reset empties the set.
func (s *idSet) Reset() {
	s.mem.free()
	s.mem = nil
	s.rebuild(1024, nil, 0)
}

func (s *idSet) resize(buckets uint64) { s.rebuild(buckets, func(slot) bool { return true }, s.n) }

// rebuild copies the slots that keep accepts, kept of them, into a table of
// at least buckets buckets, shrinking it when they would fill less than a
// third.
func (s *idSet) rebuild(buckets uint64, keep func(slot) bool, kept int) {
	old := s.mem
	if need := uint64(float64(kept)/maxLoad/bucketSlots) + 1; buckets < need || buckets > 3*need && buckets > 1024 {
		buckets = max(need+need/2, 1024)
	}
	s.mem, s.buckets, s.n = mapSlots(int(buckets*bucketSlots)), buckets, 0
	if old == nil {
		return
	}
	// A slot's bucket grows with its hash in both tables, so copying the
	// old table in order fills the new one in order too: returning each
	// copied stretch of the old table at once keeps the peak near the new
	// table's size, instead of the sum of both.
	const stretch = 1 << 17 // slots: 2 MiB
	for from := 0; from < len(old.s); from += stretch {
		to := min(from+stretch, len(old.s))
		for _, k := range old.s[from:to] {
			if k.lo != 0 && keep(k) {
				s.put(k)
				s.n++
			}
		}
		old.release(from, to)
	}
	old.free()
}

// userCache remembers which (app, day, user) were written to user_days
// lately, so that repeated logins do not write them again. It is a fixed-size
// four-way cache: a key it lost is only written again, which changes nothing
// (user_days is a set), while a key it holds was certainly written.
type userCache struct {
	mem     *slots
	buckets uint64
}

// userCacheBuckets makes a 16 MiB cache per partition: 1M entries.
const userCacheBuckets = 1 << 18

func newUserCache(buckets uint64) *userCache {
	return &userCache{mem: mapSlots(int(buckets * bucketSlots)), buckets: buckets}
}

// Seen reports whether the key is in the cache, and puts it in when not.
func (c *userCache) Seen(h xxh3.Uint128) bool {
	k := makeSlot(h, 0)
	t := c.mem.s
	b := bucketOf(k.hi, c.buckets) * bucketSlots
	for i := b; i < b+bucketSlots; i++ {
		switch {
		case t[i].same(k):
			return true
		case t[i].lo == 0:
			t[i] = k
			return false
		}
	}
	t[b+k.hi&(bucketSlots-1)] = k // evict one at random
	return false
}

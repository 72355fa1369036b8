package aggregate

import (
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/immeter/immeter/schemas"
)

// bloom is a split-block Bloom filter: an id sets one bit in each of the
// eight 64-bit words of one 64-byte block (one cache line), chosen by its
// hash, so a lookup costs one cache miss. It holds up to capacity ids at the
// bits per id it was made with; more only raise its false-positive rate.
// Its memory is mapped outside the Go heap, as an idSet's.
type bloom struct {
	mem      *slots // four slots (eight words) per block
	blocks   uint64
	n        int
	capacity int
}

func newBloom(capacity int, bitsPerID float64) *bloom {
	blocks := uint64(float64(capacity)*bitsPerID/512) + 1
	return &bloom{mem: mapSlots(int(blocks * 4)), blocks: blocks, capacity: capacity}
}

// block returns the eight words of h's block.
func (f *bloom) block(h xxh3.Uint128) *[8]uint64 {
	b := bucketOf(h.Hi, f.blocks)
	return (*[8]uint64)(unsafe.Pointer(&f.mem.s[b*4]))
}

// word j's bit for h: six bits of the low half each, independent of the
// high half's bits that chose the block.
func bitOf(lo uint64, j int) uint64 { return 1 << (lo >> (6 * j) & 63) }

func (f *bloom) add(h xxh3.Uint128) {
	w := f.block(h)
	for j := range w {
		w[j] |= bitOf(h.Lo, j)
	}
	f.n++
}

func (f *bloom) mayContain(h xxh3.Uint128) bool {
	w := f.block(h)
	for j := range w {
		if w[j]&bitOf(h.Lo, j) == 0 {
			return false
		}
	}
	return true
}

func (f *bloom) bytes() int { return len(f.mem.s) * int(unsafe.Sizeof(slot{})) }

// dayFilter holds the durable ids of one day: Bloom filters filled one
// after the other, each made when the one before is full, with twice its
// capacity, so that memory stays within twice the ids' need (and near it
// once a day is loaded whole) and a lookup probes a few blocks.
type dayFilter struct {
	day    schemas.Day
	slices []*bloom
}

// idFilter is what a partition knows of the ids it wrote to event_ids (or
// found there when it was opened) within the accepted window: a filter per
// day, dropped whole when the day leaves the window. It never misses an id
// it was given; a hit may be false, and must be confirmed in ClickHouse
// before an event is called a duplicate.
type idFilter struct {
	bitsPerID float64
	minSlice  int
	days      []*dayFilter // few: the days of the window that have ids
}

// minFilterSlice is the capacity of a day's first filter when nothing says
// how many ids it will get.
const minFilterSlice = 1 << 16

// Every slice of a day adds its own false positives, whatever its size, and
// a growing day has several small ones: those below smallSlice ids get half
// as many bits per id again, which costs little (at most a million ids) and
// makes their false positives ~20x rarer at 16 bits.
const smallSlice = 1 << 20

// sliceBits returns the bits per id of a slice of capacity ids.
func (f *idFilter) sliceBits(capacity int) float64 {
	if capacity < smallSlice {
		return f.bitsPerID * 3 / 2
	}
	return f.bitsPerID
}

func newIDFilter(bitsPerID float64) *idFilter {
	return &idFilter{bitsPerID: bitsPerID, minSlice: minFilterSlice}
}

// dayOf returns the filter of day, making one whose first slice has room
// for hint ids (at least minSlice).
func (f *idFilter) dayOf(day schemas.Day, hint int) *dayFilter {
	for _, d := range f.days {
		if d.day == day {
			return d
		}
	}
	c := max(hint, f.minSlice)
	d := &dayFilter{day: day, slices: []*bloom{newBloom(c, f.sliceBits(c))}}
	f.days = append(f.days, d)
	return d
}

// Add puts a durable id of day into the filter.
func (f *idFilter) Add(h xxh3.Uint128, day schemas.Day) {
	d := f.dayOf(day, 0)
	last := d.slices[len(d.slices)-1]
	if last.n >= last.capacity {
		total := 0
		for _, s := range d.slices {
			total += s.capacity
		}
		last = newBloom(total, f.sliceBits(total))
		d.slices = append(d.slices, last)
	}
	last.add(h)
}

// MayContain reports whether h may be a durable id: false means it is not.
func (f *idFilter) MayContain(h xxh3.Uint128) bool {
	for _, d := range f.days {
		for _, s := range d.slices {
			if s.mayContain(h) {
				return true
			}
		}
	}
	return false
}

// DropBefore forgets the days before day.
func (f *idFilter) DropBefore(day schemas.Day) {
	kept := f.days[:0]
	for _, d := range f.days {
		if d.day >= day {
			kept = append(kept, d)
			continue
		}
		d.free()
	}
	clear(f.days[len(kept):])
	f.days = kept
}

// Len returns the number of ids added.
func (f *idFilter) Len() int {
	n := 0
	for _, d := range f.days {
		for _, s := range d.slices {
			n += s.n
		}
	}
	return n
}

// Bytes returns the memory the filter holds.
func (f *idFilter) Bytes() int {
	n := 0
	for _, d := range f.days {
		for _, s := range d.slices {
			n += s.bytes()
		}
	}
	return n
}

func (d *dayFilter) free() {
	for _, s := range d.slices {
		s.mem.free()
	}
	d.slices = nil
}

func (f *idFilter) free() {
	for _, d := range f.days {
		d.free()
	}
	f.days = nil
}

// parkedEvent is an event whose id the filter may hold, waiting for
// ClickHouse to say whether it is in event_ids.
type parkedEvent struct {
	offset uint64
	e      schemas.Event // with its strings (SetStrings)
	h      xxh3.Uint128
	day    schemas.Day
}

// storedID is an id found in event_ids: the day and the offset it was
// first seen at.
type storedID struct {
	day    schemas.Day
	offset uint64
}

// resolveParked folds the parked events in their order, now that stored
// holds those of their ids found in event_ids (within the window). An id
// found there is a duplicate, or the same message read again when found at
// the event's own offset; an id not found was a false positive of the
// filter, and the event is new, unless a parked event before it had the
// same id. Each folded event's outcome goes to done. On an error (a day
// that could not be loaded) the events not yet folded stay parked.
func (s *partitionState) resolveParked(stored map[xxh3.Uint128]storedID, done func(Outcome, bool)) error {
	for i, p := range s.parked {
		first, seen := s.ids.Get(p.h)
		replay, falseHit := false, false
		if !seen {
			if r, ok := stored[p.h]; ok {
				first, seen, replay = r.day, true, r.offset == p.offset
			} else {
				falseHit = true
			}
		}
		out, err := s.fold(p.offset, p.e, nil, p.h, p.day, first, seen, replay)
		if err != nil {
			s.parked = append(s.parked[:0], s.parked[i:]...)
			return err
		}
		done(out, falseHit)
	}
	clear(s.parked)
	s.parked = s.parked[:0]
	return nil
}

// durable moves the ids just written to event_ids from the exact set into
// the filter: the exact set holds exactly the ids of the rows written.
func (s *partitionState) durable(rows []idRow) {
	if s.filter == nil {
		return
	}
	for _, r := range rows {
		s.filter.Add(r.id, r.day)
	}
	s.ids.Reset()
}

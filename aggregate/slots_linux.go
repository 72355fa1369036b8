package aggregate

import (
	"runtime"
	"syscall"
	"unsafe"
)

// slots is a table's memory, mapped from the operating system rather than
// allocated on the Go heap: the collector does not count it, so a large
// table does not let the heap double before the next collection, and it is
// returned to the system at once when freed.
type slots struct {
	s       []slot
	mapped  []byte
	cleanup runtime.Cleanup
}

func mapSlots(n int) *slots {
	size := n * int(unsafe.Sizeof(slot{}))
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space: the heap is the only other place.
		return &slots{s: make([]slot, n)}
	}
	madviseHuge(b)
	m := &slots{s: unsafe.Slice((*slot)(unsafe.Pointer(unsafe.SliceData(b))), n), mapped: b}
	m.cleanup = runtime.AddCleanup(m, func(b []byte) { _ = syscall.Munmap(b) }, b)
	return m
}

// free returns the memory; the slots must not be used after.
func (m *slots) free() {
	if m.mapped == nil {
		return
	}
	m.cleanup.Stop()
	_ = syscall.Munmap(m.mapped)
	m.s, m.mapped = nil, nil
}

// release returns the memory of slots [from, to) to the system; they read
// as empty after.
func (m *slots) release(from, to int) {
	if m.mapped == nil {
		return
	}
	const size = int(unsafe.Sizeof(slot{}))
	page := syscall.Getpagesize()
	lo, hi := (from*size+page-1)/page*page, to*size/page*page
	if to == len(m.s) {
		hi = len(m.mapped)
	}
	if lo < hi {
		_ = syscall.Madvise(m.mapped[lo:hi], syscall.MADV_DONTNEED)
	}
}

// madviseHuge asks for transparent huge pages for a large table, which turn
// most of its lookups' TLB misses into hits.
func madviseHuge(b []byte) {
	if len(b) >= 4<<20 {
		_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
	}
}

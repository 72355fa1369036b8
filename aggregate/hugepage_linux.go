package aggregate

import "syscall"

// madviseHuge asks for transparent huge pages for a large table, which turn
// most of its lookups' TLB misses into hits.
func madviseHuge(b []byte) {
	if len(b) >= 4<<20 {
		_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
	}
}

//go:build !unix

package aggregate

// slots is a table's memory, on the Go heap where the system offers no
// anonymous mappings.
type slots struct{ s []slot }

func mapSlots(n int) *slots { return &slots{s: make([]slot, n)} }

func (m *slots) free() { m.s = nil }

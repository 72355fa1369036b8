//go:build !linux

package aggregate

// slots is a table's memory, on the Go heap where the system offers no
// anonymous mappings it can advise.
type slots struct{ s []slot }

func mapSlots(n int) *slots { return &slots{s: make([]slot, n)} }

func (m *slots) free() { m.s = nil }

func (m *slots) release(from, to int) {}

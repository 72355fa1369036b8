//go:build unix && !linux

package aggregate

func madviseHuge([]byte) {}

package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// startProfiles writes a CPU profile of the whole run, and a heap profile
// at its end, to IMMETER_PROFILE_DIR as <command>-<pid>.cpu and .heap, when
// that variable is set (go tool pprof bin/immeter <file>). The returned func
// finishes them.
func startProfiles(command string) func() {
	dir := os.Getenv("IMMETER_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", command, os.Getpid()))
	f, err := os.Create(base + ".cpu")
	if err != nil {
		slog.Warn("profile: IMMETER_PROFILE_DIR", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		slog.Warn("profile: cpu", "err", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		h, err := os.Create(base + ".heap")
		if err != nil {
			return
		}
		defer h.Close()
		runtime.GC()
		_ = pprof.WriteHeapProfile(h)
	}
}

package aggregate

import (
	"strconv"
	"testing"
)

// FuzzIsDecimal checks the key check against the decimal form it replaced.
func FuzzIsDecimal(f *testing.F) {
	for _, s := range []string{"1400012345", "01400012345", "0", "", "+1", "4294967295", "4294967296", "12a", " 1", "18446744073709551617"} {
		f.Add([]byte(s), uint32(1400012345))
		f.Add([]byte(s), uint32(0))
	}
	f.Fuzz(func(t *testing.T, key []byte, app uint32) {
		if got, want := isDecimal(key, app), string(key) == strconv.FormatUint(uint64(app), 10); got != want {
			t.Fatalf("unexpected isDecimal(%q, %d); got %v; want %v", key, app, got, want)
		}
		if got := isDecimal([]byte(strconv.FormatUint(uint64(app), 10)), app); !got {
			t.Fatalf("isDecimal refuses app %d in decimal", app)
		}
	})
}

package schemas

import (
	"syscall"
	"testing"
	"time"
)

// benchEvents are typical events of each type, as IM nodes send them.
var benchEvents = []struct{ name, json string }{
	{"login", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d90","type":"login","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","user":"u8812345","platform":"android"}`},
	{"message", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d91","type":"message","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","user":"u8812345","channel":"group","count":3}`},
	{"group", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d92","type":"group","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","op":"create","group":"g12345","group_type":"Public"}`},
	{"call", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d93","type":"call","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","user":"u8812345","media":"video","seconds":184,"call":"c99"}`},
	{"plan", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d94","type":"plan","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","edition":"premium"}`},
	{"invalid", `{"id":"7f3c2a9e41d84b0c9a1e5d2f6b7c8d95","type":"message","app":1400012345,"time":"2026-11-25T21:00:00.123+08:00","user":"u8812345","channel":"sms"}`},
}

func BenchmarkDecodeEvent(b *testing.B) {
	for _, ev := range benchEvents {
		data := []byte(ev.json)
		b.Run(ev.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			defer reportCPU(b)()
			for b.Loop() {
				_, err := DecodeEvent(data)
				if (err != nil) != (ev.name == "invalid") {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeEventStd is the encoding/json path, which DecodeEvent
// takes for unusual and invalid input: the baseline of the fast path.
func BenchmarkDecodeEventStd(b *testing.B) {
	for _, ev := range benchEvents {
		data := []byte(ev.json)
		b.Run(ev.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			defer reportCPU(b)()
			for b.Loop() {
				_, err := decodeStd(data)
				if (err != nil) != (ev.name == "invalid") {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDayOf(b *testing.B) {
	loc, _ := ParseTimezone(DefaultTimezone)
	e, err := DecodeEvent([]byte(benchEvents[0].json))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = DayOf(e.Time, loc)
	}
}

// reportCPU adds the process's CPU time per op to b's results when the
// returned func runs: on a shared machine the wall clock counts others'
// work too.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// marshalSink keeps BenchmarkMarshalJSON's result on the heap, as a Kafka
// message's value is.
var marshalSink []byte

// BenchmarkMarshalJSON is the cost of encoding an event for Kafka.
func BenchmarkMarshalJSON(b *testing.B) {
	for _, ev := range benchEvents[:5] {
		e, err := DecodeEvent([]byte(ev.json))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(ev.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := e.MarshalJSON()
				if err != nil {
					b.Fatal(err)
				}
				marshalSink = v
			}
		})
	}
}

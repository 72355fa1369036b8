package aggregate

import "testing"

func TestPlace(t *testing.T) {
	const a, b = "aaaa", "bbbb"
	f := func(name string, pos position, lr logRange, committed int64, lost bool, wantStart int64, wantKind string) {
		t.Helper()
		start, st := place(3, pos, lr, committed, lost)
		kind := ""
		if st != nil {
			kind = st.Kind
			if st.Partition != 3 || st.LogStart != lr.start || st.LogEnd != lr.end {
				t.Errorf("%s: unexpected report %+v", name, st)
			}
		}
		if kind != wantKind || st == nil && start != wantStart {
			t.Errorf("%s: unexpected place; got %d, %q; want %d, %q", name, start, kind, wantStart, wantKind)
		}
	}
	none := position{next: -1}
	f("new partition", none, logRange{0, 10, a}, -2, false, 0, "")
	f("new partition after retention", none, logRange{150, 200, a}, -2, false, 150, "")
	f("no position, committed, log from 0", none, logRange{0, 200, a}, 120, false, 0, "")
	f("no position, committed, log from 150", none, logRange{150, 200, a}, 120, false, 0, GapStateLost)
	f("position lost under this process", none, logRange{150, 200, a}, -2, true, 0, GapStateLost)
	f("position lost under this process, log from 0", none, logRange{0, 200, a}, -2, true, 0, "")
	f("within the log", position{next: 120, topicID: a}, logRange{100, 200, a}, -2, false, 120, "")
	f("at the log start", position{next: 100, topicID: a}, logRange{100, 200, a}, -2, false, 100, "")
	f("at the log end", position{next: 200, topicID: a}, logRange{100, 200, a}, -2, false, 200, "")
	f("before the log start", position{next: 99, topicID: a}, logRange{100, 200, a}, -2, false, 0, GapBeforeLogStart)
	f("beyond the log end, same topic", position{next: 201, topicID: a}, logRange{100, 200, a}, -2, false, 0, GapLogTruncated)
	f("beyond the log end, topic id unknown", position{next: 201}, logRange{100, 200, a}, -2, false, 0, GapTopicRecreated)
	f("other topic id, within the log", position{next: 50, topicID: a}, logRange{0, 80, b}, -2, false, 0, GapTopicRecreated)
	f("other topic id, broker without ids", position{next: 50, topicID: a}, logRange{0, 80, ""}, -2, false, 50, "")
	f("epoch base", position{next: 1050, base: 1000, topicID: b}, logRange{0, 80, b}, -2, false, 50, "")
	f("epoch base, before the log start", position{next: 1050, base: 1000, topicID: b}, logRange{60, 80, b}, -2, false, 0, GapBeforeLogStart)
}

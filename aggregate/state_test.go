package aggregate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TestApply folds short message sequences into a fresh partition state and
// checks each outcome (counted, replayed, duplicate, rejected), the day's
// counters and the dead letters, without Kafka or ClickHouse.
func TestApply(t *testing.T) {
	loc := time.FixedZone(schemas.DefaultTimezone, 8*3600)
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, loc)
	today := schemas.DayOf(now, loc)
	const app = 1400000001
	key := fmt.Sprint(app)

	type msg struct {
		offset     int64
		key, value string
		want       Outcome
	}
	event := func(id, typ string, at time.Time, extra string) string {
		return fmt.Sprintf(`{"id":%q,"type":%q,"app":%d,"time":%q%s}`, id, typ, app, at.Format(time.RFC3339Nano), extra)
	}
	login := func(id, user string, at time.Time) string {
		return event(id, "login", at, fmt.Sprintf(`,"user":%q`, user))
	}
	// f applies msgs to a state that accepts 62 days back and maxFuture
	// ahead of now, after prep, and checks today's counters, the number of
	// pending user rows and the dead letters' reasons (prefixes).
	f := func(name string, maxFuture time.Duration, prep func(*partitionState), msgs []msg, want Counters, users int, reasons ...string) {
		t.Run(name, func(t *testing.T) {
			s := newPartitionState(0, loc)
			defer s.free()
			s.minDay = today - 62
			s.maxFuture, s.maxTime, s.clock = maxFuture, now.Add(maxFuture), func() time.Time { return now }
			if prep != nil {
				prep(s)
			}
			for _, m := range msgs {
				var k []byte
				if m.key != "" {
					k = []byte(m.key)
				}
				got, err := s.Apply(m.offset, k, []byte(m.value))
				if err != nil {
					t.Fatalf("offset %d: %v", m.offset, err)
				}
				if got != m.want {
					t.Fatalf("unexpected outcome at offset %d; got %d; want %d", m.offset, got, m.want)
				}
			}
			var c Counters
			if st := s.days[dayKey{app, today}]; st != nil {
				c = st.c
			}
			if c != want {
				t.Fatalf("unexpected counters; got %+v; want %+v", c, want)
			}
			if len(s.pendingUsers) != users {
				t.Fatalf("unexpected user rows; got %d; want %d", len(s.pendingUsers), users)
			}
			if len(s.pendingDLQ) != len(reasons) {
				t.Fatalf("unexpected dead letters; got %d (%+v); want %d", len(s.pendingDLQ), s.pendingDLQ, len(reasons))
			}
			for i, r := range reasons {
				if d := s.pendingDLQ[i]; !strings.HasPrefix(d.reason, r) {
					t.Fatalf("unexpected dead letter %d; got %q at %d; want %q", i, d.reason, d.offset, r)
				}
			}
		})
	}

	f("counted", 10*time.Minute, nil, []msg{
		{0, key, login("a", "alice", now), Counted},
		{1, key, login("b", "alice", now), Counted}, // the same user: one user row
		{2, key, event("c", "message", now, `,"user":"bob","channel":"group","count":3`), Counted},
		{3, key, event("d", "call", now, `,"user":"bob","media":"audio","seconds":61`), Counted},
		{4, key, event("e", "group", now, `,"op":"create","group":"g1","group_type":"Work"`), Counted},
	}, Counters{Logins: 2, MessagesGroup: 3, CallsAudio: 1, CallSecondsAudio: 61, GroupsCreated: 1}, 1)

	f("duplicate", 10*time.Minute, nil, []msg{
		{0, key, login("a", "alice", now), Counted},
		{1, key, login("a", "alice", now), Duplicate},
		// Same id, other content: still the same event.
		{2, key, event("a", "message", now, `,"user":"bob","channel":"c2c"`), Duplicate},
	}, Counters{Logins: 1, Duplicates: 2}, 1)

	// Reopened at offset 3 with today's row stored up to offset 10 and id
	// "a" first seen at offset 3: reading 3..9 again changes no counter.
	reopened := func(s *partitionState) {
		s.days[dayKey{app, today}] = &dayState{c: Counters{Logins: 2}, version: 10}
		h := idHash(app, "a")
		s.ids.Add(h, today)
		s.replay[h] = 3
	}
	f("replayed", 10*time.Minute, reopened, []msg{
		{3, key, login("a", "alice", now), Replayed},
		{4, key, login("b", "bob", now), Replayed}, // its id row was not stored yet
		{10, key, login("c", "carol", now), Counted},
		{11, key, login("a", "alice", now), Duplicate}, // at another offset than its first
	}, Counters{Logins: 3, Duplicates: 1}, 3)

	f("rejected", 10*time.Minute, nil, []msg{
		{0, key, `{"id":"a","type":"login"`, Rejected},
		{1, key, login("b", "", now), Rejected},
		{2, key, login("c", "alice", now.Add(11*time.Minute)), Rejected},
		{3, key, login("d", "alice", now.AddDate(0, 0, -63)), Rejected},
		{4, "", login("e", "alice", now), Rejected},
		{5, "1400000002", login("f", "alice", now), Rejected},
		{6, "01400000001", login("g", "alice", now), Rejected},
	}, Counters{}, 0, "", "user: ", "time: too far in the future", "time: too old", "key: missing",
		`key: "1400000002" does not match app 1400000001`, `key: "01400000001" does not match app 1400000001`)

	// MAX_EVENT_FUTURE=0: an event of now is accepted, one a second later not.
	f("no future", 0, nil, []msg{
		{0, key, login("a", "alice", now), Counted},
		{1, key, login("b", "alice", now.Add(time.Second)), Rejected},
	}, Counters{Logins: 1}, 1, "time: too far in the future")

	// A rejected key never enters the id set: the same event with the
	// right key afterwards is new usage, not a duplicate.
	f("key then fixed", 10*time.Minute, nil, []msg{
		{0, "1400000002", login("a", "alice", now), Rejected},
		{1, key, login("a", "alice", now), Counted},
	}, Counters{Logins: 1}, 1, "key: ")
}

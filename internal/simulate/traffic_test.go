package simulate

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)

// collect runs Traffic with a fixed clock and returns what it published.
func collect(t *testing.T, cfg TrafficConfig) ([]schemas.Event, Stats) {
	t.Helper()
	cfg.Now = func() time.Time { return testNow }
	var got []schemas.Event
	st, err := Traffic(context.Background(), cfg, func(_ context.Context, e schemas.Event) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

func TestTrafficDeterministicAndMixed(t *testing.T) {
	const n = 20000
	cfg := TrafficConfig{Seed: 7, Events: n, Rate: 1e9}
	a, st := collect(t, cfg)
	b, _ := collect(t, cfg)
	if len(a) != n || st.Events != n {
		t.Fatalf("unexpected event count; got %d (stats %d); want %d", len(a), st.Events, n)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("event %d differs between two runs with one seed: %+v vs %+v", i, a[i], b[i])
		}
	}
	if c, _ := collect(t, TrafficConfig{Seed: 8, Events: 100, Rate: 1e9}); c[0] == a[0] && c[1] == a[1] {
		t.Fatalf("seeds 7 and 8 give the same events")
	}

	share := func(typ schemas.EventType) float64 { return float64(st.ByType[typ]) / n }
	f := func(what string, got, want, tolerance float64) {
		t.Helper()
		if math.Abs(got-want) > tolerance {
			t.Fatalf("unexpected share of %s; got %.3f; want %.2f±%.2f", what, got, want, tolerance)
		}
	}
	f("messages", share(schemas.Message), 0.60, 0.02)
	f("logins", share(schemas.Login), 0.35, 0.02)
	f("other", share(schemas.Group)+share(schemas.Call)+share(schemas.Plan), 0.05, 0.01)

	ids := map[string]bool{}
	users := map[string]int{}
	plans := map[uint32]int{}
	live := map[string]bool{}
	for _, e := range a {
		if err := e.Validate(); err != nil {
			t.Fatalf("invalid simulated event %+v: %v", e, err)
		}
		if ids[e.ID] {
			t.Fatalf("duplicate id %s", e.ID)
		}
		ids[e.ID] = true
		if e.App < 1400000001 || e.App > 1400000020 {
			t.Fatalf("app %d outside the default 20 apps", e.App)
		}
		if e.User != "" {
			users[e.User]++
		}
		switch e.Type {
		case schemas.Plan:
			if plans[e.App]++; plans[e.App] > 1 || e.Edition == "developer" {
				t.Fatalf("app %d: second or downward plan change %s", e.App, e.Edition)
			}
		case schemas.Group:
			key := strconv.FormatUint(uint64(e.App), 10) + "/" + e.Group
			if e.Op == "create" {
				live[key] = true
			} else if !live[key] {
				t.Fatalf("dissolve of group %s of app %d that was never created", e.Group, e.App)
			} else {
				delete(live, key)
			}
		}
	}
	// Zipf: the busiest user is far busier than the median one.
	if users["u0"] < 20*users["u1000"]+1 {
		t.Fatalf("user activity not skewed: u0 %d, u1000 %d", users["u0"], users["u1000"])
	}
}

func TestTrafficRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		st, err := Traffic(context.Background(), TrafficConfig{Rate: 500, Duration: 2 * time.Second},
			func(context.Context, schemas.Event) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if n < 995 || n > 1001 || st.Events != int64(n) || st.Elapsed != 2*time.Second {
			t.Fatalf("unexpected events in 2s at 500/s; got %d (stats %d in %s); want 1000 in 2s", n, st.Events, st.Elapsed)
		}
	})
}

func TestTrafficStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	st, err := Traffic(context.Background(), TrafficConfig{Rate: 1e9}, func(context.Context, schemas.Event) error {
		if n++; n == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || st.Events != 9 {
		t.Fatalf("unexpected result; got %d events, %v; want 9 and boom", st.Events, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err = Traffic(ctx, TrafficConfig{Rate: 1e9}, func(ctx context.Context, _ schemas.Event) error {
		cancel()
		return ctx.Err()
	})
	if err != nil || st.Events != 0 {
		t.Fatalf("cancelled run; got %d events, %v; want a normal end", st.Events, err)
	}
}

func TestTrafficConfigValidate(t *testing.T) {
	f := func(cfg TrafficConfig, want string) {
		t.Helper()
		_, err := Traffic(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error; got %v; want one containing %q", err, want)
		}
	}
	f(TrafficConfig{Apps: -1}, "TrafficConfig.Apps")
	f(TrafficConfig{FirstApp: 4294967290, Apps: 10}, "TrafficConfig.FirstApp")
	f(TrafficConfig{UsersPerApp: -1}, "TrafficConfig.UsersPerApp")
	f(TrafficConfig{Skew: 0.5}, "TrafficConfig.Skew")
	f(TrafficConfig{Rate: -1}, "TrafficConfig.Rate")
	f(TrafficConfig{Duration: -1}, "TrafficConfig.Duration")
	f(TrafficConfig{Events: -1}, "TrafficConfig.Events")
	// One app with one user is a valid, if dull, simulation.
	if got, _ := collect(t, TrafficConfig{Apps: 1, UsersPerApp: 1, Events: 50, Rate: 1e9}); len(got) != 50 {
		t.Fatalf("unexpected events; got %d; want 50", len(got))
	}
}

// TestTrafficThroughProducer runs the simulator into Kafka as the command
// does, on the embedded fake broker kfake and on the real one of
// KAFKA_BROKERS, and finds every event on the topic.
func TestTrafficThroughProducer(t *testing.T) {
	run := func(t *testing.T, brokers []string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		topic := "immeter-test-simulate-" + testenv.Suffix()
		if err := ingest.EnsureTopics(ctx, brokers, 3, 1, topic); err != nil {
			t.Fatal(err)
		}
		testenv.DeleteTopicsAtEnd(t, brokers, topic)
		cfg := ingest.DefaultProducerConfig()
		cfg.Brokers, cfg.Topic, cfg.Block = brokers, topic, true
		p, err := ingest.NewProducer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := Traffic(ctx, TrafficConfig{Seed: 1, Events: 3000, Rate: 1e9}, p.Publish)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := testenv.Count(ctx, t, brokers, topic); n != st.Events || n != 3000 {
			t.Fatalf("unexpected records; got %d; want %d", n, st.Events)
		}
	}
	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		run(t, c.ListenAddrs())
	})
	t.Run("kafka", func(t *testing.T) { run(t, testenv.Kafka(t)) })
}

// TestTrafficWithinEditionLimits: the IM service refuses what an edition
// does not allow, so the simulated traffic never has a Developer app with
// more than 100 users or 10 live groups, nor a Standard app with more than
// 50 live groups; upgraded apps grow beyond 100 users.
func TestTrafficWithinEditionLimits(t *testing.T) {
	const n = 200000
	got, _ := collect(t, TrafficConfig{Seed: 3, Events: n, Rate: 1e9, Apps: 20, UsersPerApp: 5000})
	type app struct {
		edition   string
		users     map[string]bool
		live      map[string]bool
		liveMax   int
		beyond100 bool // a user counted after the 100th on an upgraded app
	}
	apps := map[uint32]*app{}
	for _, e := range got {
		a := apps[e.App]
		if a == nil {
			a = &app{edition: "developer", users: map[string]bool{}, live: map[string]bool{}}
			apps[e.App] = a
		}
		switch e.Type {
		case schemas.Plan:
			a.edition = e.Edition
		case schemas.Group:
			if e.GroupType == "AVChatRoom" {
				if e.Op == "create" {
					a.live[e.Group] = true
				} else {
					delete(a.live, e.Group)
				}
				limit := map[string]int{"developer": 10, "standard": 50}[a.edition]
				if limit > 0 && len(a.live) > limit {
					t.Fatalf("app %d on %s has %d live groups; the edition allows %d", e.App, a.edition, len(a.live), limit)
				}
				a.liveMax = max(a.liveMax, len(a.live))
			}
		}
		if e.User != "" && !a.users[e.User] {
			a.users[e.User] = true
			if len(a.users) > 100 {
				if a.edition == "developer" {
					t.Fatalf("app %d on developer has its %dth user %s", e.App, len(a.users), e.User)
				}
				a.beyond100 = true
			}
		}
	}
	upgraded, grew, capped := 0, 0, 0
	for _, a := range apps {
		if a.edition != "developer" {
			upgraded++
			if a.beyond100 {
				grew++
			}
		}
		if a.liveMax == 10 {
			capped++
		}
	}
	if upgraded == 0 || grew == 0 {
		t.Fatalf("%d apps upgraded, %d of them beyond 100 users: the test stream shows nothing", upgraded, grew)
	}
	t.Logf("%d apps: %d upgraded (%d beyond 100 users), %d at 10 live groups", len(apps), upgraded, grew, capped)
}

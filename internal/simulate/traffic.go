package simulate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/immeter/immeter/schemas"
)

// TrafficConfig shapes simulated IM traffic. Zero fields take the defaults
// of DefaultTrafficConfig.
//
// The mix is fixed: 60% messages, 35% logins, 5% other (group creations and
// dissolutions, calls, and for some apps one plan upgrade from developer to
// standard or premium). Users and apps are Zipf-skewed: a few are very busy,
// most are quiet.
type TrafficConfig struct {
	// Apps is how many apps send traffic. Default 20.
	Apps int
	// FirstApp is the first app id; the others follow. Default 1400000001.
	FirstApp uint32
	// UsersPerApp is how many distinct users each app has. Default 2000.
	UsersPerApp int
	// Skew is the Zipf exponent (> 1) of user and app activity. Default 1.1.
	Skew float64
	// Rate is events per second. Default 2000.
	Rate float64
	// Duration stops the simulation after this long; 0 runs until ctx ends
	// (or Events are out).
	Duration time.Duration
	// Events stops the simulation after this many events; 0 means no limit.
	Events int64
	// Seed fixes the traffic: the same seed gives the same events, ids
	// included ("sim-<seed>-<n>"), so a repeated run is deduplicated
	// downstream. Use a new seed for new traffic.
	Seed uint64
	// Now stamps the events. Default time.Now.
	Now func() time.Time
}

// DefaultTrafficConfig returns the defaults.
func DefaultTrafficConfig() TrafficConfig {
	return TrafficConfig{
		Apps:        20,
		FirstApp:    1400000001,
		UsersPerApp: 2000,
		Skew:        1.1,
		Rate:        2000,
		Now:         time.Now,
	}
}

func (c *TrafficConfig) setDefaults() {
	d := DefaultTrafficConfig()
	if c.Apps == 0 {
		c.Apps = d.Apps
	}
	if c.FirstApp == 0 {
		c.FirstApp = d.FirstApp
	}
	if c.UsersPerApp == 0 {
		c.UsersPerApp = d.UsersPerApp
	}
	if c.Skew == 0 {
		c.Skew = d.Skew
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Now == nil {
		c.Now = d.Now
	}
}

// Validate names the first bad field.
func (c TrafficConfig) Validate() error {
	switch {
	case c.Apps < 1:
		return fmt.Errorf("simulate: TrafficConfig.Apps: must be >= 1; got %d", c.Apps)
	case uint64(c.FirstApp)+uint64(c.Apps)-1 > schemas.MaxAppID:
		return fmt.Errorf("simulate: TrafficConfig.FirstApp: %d + %d apps passes the largest app id %d", c.FirstApp, c.Apps, uint64(schemas.MaxAppID))
	case c.UsersPerApp < 1:
		return fmt.Errorf("simulate: TrafficConfig.UsersPerApp: must be >= 1; got %d", c.UsersPerApp)
	case !(c.Skew > 1):
		return fmt.Errorf("simulate: TrafficConfig.Skew: must be > 1; got %v", c.Skew)
	case !(c.Rate > 0):
		return fmt.Errorf("simulate: TrafficConfig.Rate: must be > 0; got %v", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("simulate: TrafficConfig.Duration: must be >= 0; got %s", c.Duration)
	case c.Events < 0:
		return fmt.Errorf("simulate: TrafficConfig.Events: must be >= 0; got %d", c.Events)
	}
	return nil
}

// Stats counts what Traffic published.
type Stats struct {
	Events  int64
	ByType  map[schemas.EventType]int64
	Elapsed time.Duration
}

// Traffic generates IM traffic at cfg.Rate and hands each event to publish
// (a Producer's Publish, for one), until cfg.Duration or cfg.Events is
// reached or ctx ends, which are normal ends. It stops at the first error of
// publish other than ctx's and returns it.
func Traffic(ctx context.Context, cfg TrafficConfig, publish func(context.Context, schemas.Event) error) (stats Stats, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	g := newGenerator(cfg)
	stats.ByType = map[schemas.EventType]int64{}
	start := time.Now()
	defer func() { stats.Elapsed = time.Since(start) }()
	for {
		if cfg.Events > 0 && stats.Events >= cfg.Events {
			return stats, nil
		}
		// Pace by the wall clock: publish what is due, then sleep.
		if wait := time.Duration(float64(stats.Events)/cfg.Rate*float64(time.Second)) - time.Since(start); wait > 0 {
			t := time.NewTimer(max(wait, time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return stats, nil
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return stats, nil
		}
		e := g.next()
		if err := publish(ctx, e); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return stats, nil
			}
			return stats, fmt.Errorf("simulate: event %d (%s of app %d): %w", stats.Events, e.Type, e.App, err)
		}
		stats.Events++
		stats.ByType[e.Type]++
	}
}

// generator makes the events of a simulation, deterministically for a seed.
type generator struct {
	cfg   TrafficConfig
	r     *rand.Rand
	apps  *rand.Zipf
	users *rand.Zipf
	state []appState
	n     uint64
	idPfx string
}

type appState struct {
	upgradeTo string // "" when the app stays on developer, else after the upgrade
	upgraded  bool
	groups    []simGroup // groups not dissolved
	live      int        // of which live-streaming (AVChatRoom)
	nextGroup int
}

// The Developer edition's limits that the IM service enforces (plans.yaml):
// the simulated traffic stays within them, as real traffic does.
const (
	developerMAU  = 100
	liveGroupType = "AVChatRoom"
)

// liveGroupLimit is the number of live groups the app's edition allows:
// 10 on Developer, 50 on Standard, unlimited on Premium.
func liveGroupLimit(st *appState) int {
	switch {
	case !st.upgraded:
		return 10
	case st.upgradeTo == "standard":
		return 50
	}
	return int(^uint(0) >> 1)
}

type simGroup struct{ id, typ string }

func newGenerator(cfg TrafficConfig) *generator {
	r := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	g := &generator{
		cfg:   cfg,
		r:     r,
		apps:  rand.NewZipf(r, cfg.Skew, 2, uint64(cfg.Apps-1)),
		users: rand.NewZipf(r, cfg.Skew, 1, uint64(cfg.UsersPerApp-1)),
		state: make([]appState, cfg.Apps),
		idPfx: "sim-" + strconv.FormatUint(cfg.Seed, 10) + "-",
	}
	for i := range g.state {
		g.state[i].upgradeTo = pick(r, []string{"", "standard", "premium"}, []float64{1, 1, 1})
	}
	return g
}

func (g *generator) next() schemas.Event {
	r := g.r
	ai := int(g.apps.Uint64())
	st := &g.state[ai]
	e := schemas.Event{
		ID:   g.idPfx + strconv.FormatUint(g.n, 10),
		App:  g.cfg.FirstApp + uint32(ai),
		Time: g.cfg.Now(),
	}
	u := g.users.Uint64()
	if !st.upgraded {
		// The IM service refuses logins beyond the Developer edition's
		// 100 MAU (plans.yaml): an app on it never has more users.
		u %= developerMAU
	}
	e.User = "u" + strconv.FormatUint(u, 10)
	g.n++
	switch x := r.Float64(); {
	case x < 0.60:
		e.Type = schemas.Message
		e.Channel = pick(r, schemas.Channels, channelWeights)
		e.Count = 1
		if r.Float64() < 0.1 {
			e.Count = 2 + r.Int64N(9)
		}
	case x < 0.95:
		e.Type = schemas.Login
		e.Platform = pick(r, schemas.Platforms, platformWeights)
	default:
		switch y := r.Float64(); {
		case y < 0.005 && st.upgradeTo != "" && !st.upgraded:
			st.upgraded = true
			e.Type, e.User, e.Edition = schemas.Plan, "", st.upgradeTo
		case y < 0.40 || (y < 0.65 && len(st.groups) == 0):
			typ := pick(r, schemas.GroupTypes, groupTypeWeights)
			if typ == liveGroupType && st.live >= liveGroupLimit(st) {
				// The IM service refuses a live group beyond the edition's
				// limit: this one is created as a public group.
				typ = "Public"
			}
			if typ == liveGroupType {
				st.live++
			}
			grp := simGroup{id: "g" + strconv.Itoa(st.nextGroup), typ: typ}
			st.nextGroup++
			st.groups = append(st.groups, grp)
			e.Type, e.Op, e.Group, e.GroupType = schemas.Group, "create", grp.id, grp.typ
		case y < 0.65:
			i := r.IntN(len(st.groups))
			grp := st.groups[i]
			st.groups[i] = st.groups[len(st.groups)-1]
			st.groups = st.groups[:len(st.groups)-1]
			if grp.typ == liveGroupType {
				st.live--
			}
			e.Type, e.Op, e.Group, e.GroupType = schemas.Group, "dissolve", grp.id, grp.typ
		default:
			e.Type = schemas.Call
			e.Media = pick(r, schemas.Medias, mediaWeights)
			e.Seconds = min(1+int64(r.ExpFloat64()*180), 7200)
			e.CallID = "c" + strconv.FormatUint(g.n, 10)
		}
	}
	return e
}

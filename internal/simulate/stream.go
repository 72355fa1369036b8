package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/immeter/immeter/schemas"
)

// Config shapes a Stream of encoded events for the benchmarks. Zero fields
// take the defaults of DefaultConfig.
//
// The mix is fixed: 60% messages, 35% logins and 5% other (group creations
// and dissolutions, calls, and a plan change now and then). Apps are
// Zipf-distributed. Each user belongs to one app; a login is, with
// probability NewUsers, of a user the app has not had before (until the
// app's share of Users is used up), and every other user-bearing event is of
// a Zipf-distributed pick among the app's users so far: busy apps have many
// users, a few of them busy. Users = distinct users who logged in = MAU,
// reached after about Users / (0.35 NewUsers) events.
type Config struct {
	// Apps is the number of apps. Default 100000.
	Apps int
	// FirstApp is the first app id; the others follow. Default 1400000001.
	FirstApp uint32
	// Users is the number of distinct users over all apps (each app gets a
	// pool in proportion to its traffic, at least one). Default 10000000.
	Users int
	// NewUsers is the probability that a login is of a user new to its
	// app, while the app's pool lasts. Default 0.3.
	NewUsers float64
	// AppSkew and UserSkew are Zipf exponents (> 1). Default 1.1 each.
	AppSkew, UserSkew float64
	// Duplicates is the share of events sent again with the same id, as a
	// producer retry would. Default 0.
	Duplicates float64
	// Seed fixes the stream. Ids are 32 hex digits, like ingest.NewID's,
	// derived from the seed and the event's number.
	Seed uint64
	// Time stamps event n; default: 2026-11-25T12:00:00+08:00 plus 1µs per
	// event. Offsets +08:00 are written as such, others in UTC.
	Time func(n uint64) time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Apps:     100000,
		FirstApp: 1400000001,
		Users:    10000000,
		NewUsers: 0.3,
		AppSkew:  1.1,
		UserSkew: 1.1,
	}
}

// DefaultStart is the time of event 0 of a stream with the default Time.
var DefaultStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.FixedZone("+08:00", 8*3600))

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Apps == 0 {
		c.Apps = d.Apps
	}
	if c.FirstApp == 0 {
		c.FirstApp = d.FirstApp
	}
	if c.Users == 0 {
		c.Users = d.Users
	}
	if c.NewUsers == 0 {
		c.NewUsers = d.NewUsers
	}
	if c.AppSkew == 0 {
		c.AppSkew = d.AppSkew
	}
	if c.UserSkew == 0 {
		c.UserSkew = d.UserSkew
	}
	if c.Time == nil {
		c.Time = func(n uint64) time.Time { return DefaultStart.Add(time.Duration(n) * time.Microsecond) }
	}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Apps < 1:
		return fmt.Errorf("simulate: Apps: must be >= 1; got %d", c.Apps)
	case uint64(c.FirstApp)+uint64(c.Apps)-1 > schemas.MaxAppID:
		return fmt.Errorf("simulate: FirstApp: %d + %d apps passes the largest app id", c.FirstApp, c.Apps)
	case c.Users < c.Apps:
		return fmt.Errorf("simulate: Users: must be >= Apps (%d); got %d", c.Apps, c.Users)
	case !(c.NewUsers > 0 && c.NewUsers <= 1):
		return fmt.Errorf("simulate: NewUsers: must be in (0, 1]; got %v", c.NewUsers)
	case !(c.AppSkew > 1) || !(c.UserSkew > 1):
		return fmt.Errorf("simulate: AppSkew, UserSkew: must be > 1; got %v, %v", c.AppSkew, c.UserSkew)
	case c.Duplicates < 0 || c.Duplicates >= 1:
		return fmt.Errorf("simulate: Duplicates: must be in [0, 1); got %v", c.Duplicates)
	}
	return nil
}

// Stream generates the events of a Config, deterministically for its seed.
// It is not safe for concurrent use.
type Stream struct {
	cfg    Config
	r      *rand.Rand
	apps   *rand.Zipf
	users  *rand.Zipf
	pool   []uint32 // users each app may have
	seen   []uint32 // users each app has had so far
	n      uint64
	ids    uint64
	plans  []bool     // app already changed plan
	last   [64][]byte // recent events, for duplicates
	tcache timeCache
}

// New returns the stream of cfg.
func New(cfg Config) (*Stream, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	s := &Stream{
		cfg:   cfg,
		r:     r,
		apps:  rand.NewZipf(r, cfg.AppSkew, 1, uint64(cfg.Apps-1)),
		users: rand.NewZipf(r, cfg.UserSkew, 1, math.MaxUint32),
		pool:  make([]uint32, cfg.Apps),
		seen:  make([]uint32, cfg.Apps),
		plans: make([]bool, cfg.Apps),
	}
	// Pools in proportion to the Zipf weights of the apps, at least one user.
	var total float64
	w := make([]float64, cfg.Apps)
	for i := range w {
		w[i] = math.Pow(1+float64(i), -cfg.AppSkew)
		total += w[i]
	}
	spare := float64(cfg.Users - cfg.Apps)
	for i := range w {
		s.pool[i] = 1 + uint32(spare*w[i]/total)
	}
	return s, nil
}

// Events returns how many events Next has made.
func (s *Stream) Events() uint64 { return s.n }

// App returns the app id of app index i (0 the busiest).
func (s *Stream) App(i int) uint32 { return s.cfg.FirstApp + uint32(i) }

// Next appends the next event's JSON to buf and returns it, with the event's
// app id (the Kafka key is the app id in decimal).
func (s *Stream) Next(buf []byte) (uint32, []byte) {
	n := s.n
	s.n++
	r := s.r
	if s.cfg.Duplicates > 0 && n > 0 && r.Float64() < s.cfg.Duplicates {
		if prev := s.last[r.IntN(len(s.last))]; prev != nil {
			return appOf(prev), append(buf, prev...)
		}
	}
	ai := int(s.apps.Uint64())
	app := s.cfg.FirstApp + uint32(ai)
	b := append(buf, `{"id":"`...)
	b = appendID(b, s.cfg.Seed, s.ids)
	s.ids++
	b = append(b, `","type":"`...)
	var typ schemas.EventType
	switch x := r.Float64(); {
	case x < 0.60:
		typ = schemas.Message
	case x < 0.95:
		typ = schemas.Login
	default:
		switch y := r.Float64(); {
		case y < 0.01 && !s.plans[ai]:
			typ = schemas.Plan
		case y < 0.5:
			typ = schemas.Group
		default:
			typ = schemas.Call
		}
	}
	b = append(b, typ...)
	b = append(b, `","app":`...)
	b = strconv.AppendUint(b, uint64(app), 10)
	b = append(b, `,"time":"`...)
	b = s.tcache.append(b, s.cfg.Time(n))
	b = append(b, '"')
	if typ != schemas.Plan && typ != schemas.Group {
		b = append(b, `,"user":"u`...)
		b = strconv.AppendUint(b, uint64(s.user(ai, typ == schemas.Login)), 10)
		b = append(b, '"')
	}
	switch typ {
	case schemas.Message:
		b = append(b, `,"channel":"`...)
		b = append(b, pick(r, schemas.Channels, channelWeights)...)
		b = append(b, '"')
		if r.Float64() < 0.1 {
			b = append(b, `,"count":`...)
			b = strconv.AppendInt(b, 2+r.Int64N(9), 10)
		}
	case schemas.Login:
		b = append(b, `,"platform":"`...)
		b = append(b, pick(r, schemas.Platforms, platformWeights)...)
		b = append(b, '"')
	case schemas.Group:
		op := "create"
		if r.IntN(3) == 0 {
			op = "dissolve"
		}
		b = append(b, `,"op":"`...)
		b = append(b, op...)
		b = append(b, `","group":"g`...)
		b = strconv.AppendUint(b, r.Uint64N(1000), 10)
		b = append(b, `","group_type":"`...)
		b = append(b, pick(r, schemas.GroupTypes, groupTypeWeights)...)
		b = append(b, '"')
	case schemas.Call:
		b = append(b, `,"media":"`...)
		b = append(b, pick(r, schemas.Medias, mediaWeights)...)
		b = append(b, `","seconds":`...)
		b = strconv.AppendInt(b, min(1+int64(r.ExpFloat64()*180), 7200), 10)
	case schemas.Plan:
		s.plans[ai] = true
		b = append(b, `,"edition":"`...)
		b = append(b, pick(r, schemas.Editions[1:], []float64{1, 1})...)
		b = append(b, '"')
	}
	b = append(b, '}')
	if s.cfg.Duplicates > 0 {
		i := n % uint64(len(s.last))
		s.last[i] = append(s.last[i][:0], b[len(buf):]...)
	}
	return app, b
}

// user picks the user index of an event of app i. New users come with a
// login (and with an app's first event), so the distinct users are the
// distinct users who logged in: the MAU.
func (s *Stream) user(i int, login bool) uint32 {
	if seen := s.seen[i]; seen == 0 || login && seen < s.pool[i] && s.r.Float64() < s.cfg.NewUsers {
		s.seen[i]++
		return seen
	}
	return uint32(s.users.Uint64() % uint64(s.seen[i]))
}

// appOf reads the app id of an event this package wrote.
func appOf(event []byte) uint32 {
	e, err := schemas.DecodeEvent(event)
	if err != nil {
		panic("simulate: " + err.Error())
	}
	return e.App
}

// timeCache formats times in RFC 3339 with milliseconds, reusing the
// formatted second.
type timeCache struct {
	sec    int64
	loc    *time.Location
	prefix []byte // up to and including the seconds
	suffix []byte // the offset
}

func (c *timeCache) append(b []byte, t time.Time) []byte {
	if t.Unix() != c.sec || t.Location() != c.loc || c.prefix == nil {
		c.sec, c.loc = t.Unix(), t.Location()
		c.prefix = t.Truncate(time.Second).AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		c.suffix = t.AppendFormat(c.suffix[:0], "Z07:00")
	}
	b = append(b, c.prefix...)
	ms := t.Nanosecond() / 1e6
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, c.suffix...)
}

// appendID appends the 128-bit id of event n of seed in hex: two rounds of
// SplitMix64, so ids look random and never repeat within a seed.
func appendID(b []byte, seed, n uint64) []byte {
	const hexDigits = "0123456789abcdef"
	x := seed*0x9e3779b97f4a7c15 ^ n
	for range 2 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		for i := 60; i >= 0; i -= 4 {
			b = append(b, hexDigits[z>>uint(i)&15])
		}
	}
	return b
}

// Distinct returns how many distinct users the stream has had so far.
func (s *Stream) Distinct() int {
	n := 0
	for _, v := range s.seen {
		n += int(v)
	}
	return n
}

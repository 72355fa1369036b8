package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// settings maps flags and their environment variables onto configuration
// fields. A setting's flag is its variable in lower case with dashes, less
// an IMMETER_ prefix (KAFKA_BROKERS: -kafka-brokers, IMMETER_RUN_DIR:
// -run-dir); the spellings of earlier releases (oldFlags) still work, with a
// warning. A field keeps the value it holds (the package's default) unless
// the user set the flag or the variable; a value the user set is then
// honoured or rejected, never replaced: parse checks each one and names the
// first bad one as typed, e.g. `FLUSH_INTERVAL: "0s": must be > 0`.
type settings struct {
	fs       *flag.FlagSet
	all      []*setting
	logLevel slog.Level
}

// setting is one flag with its environment variable; flag is flagName(env).
type setting struct {
	flag, env string
	def       string             // the default, shown by -h
	typed     string             // the value as the user typed it
	from      string             // the variable or -flag that gave typed; "" when unset
	parse     func(string) error // parses and checks typed into the field
	isBool    bool               // a flag that needs no value
}

func (s *setting) String() string { return s.def }

// IsBoolFlag lets a boolean flag be given without a value.
func (s *setting) IsBoolFlag() bool { return s.isBool }

// Set records a flag's value; parse checks it after all flags are read.
func (s *setting) Set(v string) error {
	s.typed, s.from = v, "-"+s.flag
	return nil
}

// settingsMade, when not nil, sees the settings of every command as they
// are made; the test that checks README.md's configuration table against
// the code sets it. Nil in the program.
var settingsMade func(*settings)

// newSettings returns the settings of a command's flag set, with the
// LOG_LEVEL every command has.
func newSettings(fs *flag.FlagSet) *settings {
	r := &settings{fs: fs, logLevel: slog.LevelInfo}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		r.printDefaults()
	}
	if settingsMade != nil {
		settingsMade(r)
	}
	r.add(&setting{env: "LOG_LEVEL", def: "info", parse: func(v string) error {
		if err := r.logLevel.UnmarshalText([]byte(v)); err != nil {
			return errors.New("want debug, info, warn or error")
		}
		return nil
	}}, "log level: debug, info, warn or error")
	return r
}

// flagName is the flag of the setting of environment variable env.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "IMMETER_")), "_", "-")
}

// oldFlags are the flag spellings of earlier releases, by variable: they
// still set the variable's setting, with a warning, and -h does not list
// them.
var oldFlags = map[string][]string{
	"KAFKA_BROKERS":             {"kafka", "brokers"},
	"KAFKA_PARTITIONS":          {"partitions"},
	"KAFKA_REPLICATION":         {"replication"},
	"CLICKHOUSE_ADDR":           {"clickhouse"},
	"CLICKHOUSE_DATABASE":       {"database"},
	"BILLING_TZ":                {"tz"},
	"EVENTS_TOPIC":              {"topic"},
	"AGGREGATE_GROUP":           {"group"},
	"MAX_EVENT_AGE":             {"max-past"},
	"MAX_EVENT_FUTURE":          {"max-future"},
	"AGGREGATE_SESSION_TIMEOUT": {"session-timeout"},
	"AGGREGATE_STUCK_RECHECK":   {"stuck-recheck"},
	"PLANS_FILE":                {"plans"},
	"ROLLUP_INTERVAL":           {"interval"},
	"ROLLUP_TICK":               {"tick"},
	"IMMETER_SECRETS_FILE":      {"secrets"},
	"INGEST_ADDR":               {"addr"},
	"INGEST_MAX_BODY_BYTES":     {"max-body-bytes"},
	"INGEST_MAX_EVENT_BYTES":    {"max-event-bytes"},
	"INGEST_MAX_CLOCK_SKEW":     {"max-clock-skew"},
	"INGEST_PUBLISH_TIMEOUT":    {"publish-timeout"},
	"INGEST_MAX_CONNECTIONS":    {"max-connections"},
	"INGEST_MAX_REQUESTS":       {"max-requests"},
	"INGEST_APP_RATE":           {"app-rate"},
	"INGEST_APP_BURST":          {"app-burst"},
	"INGEST_REPLAY_CACHE":       {"replay-cache"},
	"CONSOLE_STAFF_TOKEN":       {"staff-token"},
	"CONSOLE_STAFF_TOKEN_FILE":  {"staff-token-file"},
	"CONSOLE_SECRETS_FILE":      {"console-secrets"},
	"SIM_APPS":                  {"apps"},
	"SIM_FIRST_APP":             {"first-app"},
	"SIM_USERS":                 {"users"},
	"SIM_RATE":                  {"rate"},
	"SIM_DURATION":              {"duration"},
	"SIM_EVENTS":                {"events"},
	"SIM_SEED":                  {"seed"},
	"IMMETER_RUN_DIR":           {"dir"},
}

// oldFlag is an old spelling of a setting's flag.
type oldFlag struct {
	*setting
	name string
	fs   *flag.FlagSet // its Output gets the warning
}

// Set warns, then records the value as the setting's, named as typed.
func (o *oldFlag) Set(v string) error {
	fmt.Fprintf(o.fs.Output(), "immeter: -%s is deprecated: use -%s (or %s)\n", o.name, o.flag, o.env)
	o.typed, o.from = v, "-"+o.name
	return nil
}

// add registers s as a flag whose value, unless given on the command line,
// comes from the environment variable s.env when that is set.
func (r *settings) add(s *setting, usage string) {
	s.flag = flagName(s.env)
	if v, ok := os.LookupEnv(s.env); ok {
		s.typed, s.from = v, s.env
	}
	// -h shows the variable as the flag's argument: -flush-interval FLUSH_INTERVAL.
	q := "`"
	if s.isBool {
		q = ""
	}
	r.fs.Var(s, s.flag, usage+" ("+q+s.env+q+")")
	for _, name := range oldFlags[s.env] {
		r.fs.Var(&oldFlag{setting: s, name: name, fs: r.fs}, name, "deprecated: -"+s.flag)
	}
	r.all = append(r.all, s)
}

// printDefaults prints the flags as flag.PrintDefaults does, but not their
// old spellings.
func (r *settings) printDefaults() {
	cur := flag.NewFlagSet(r.fs.Name(), flag.ContinueOnError)
	cur.SetOutput(r.fs.Output())
	r.fs.VisitAll(func(f *flag.Flag) {
		if _, old := f.Value.(*oldFlag); !old {
			cur.Var(f.Value, f.Name, f.Usage)
		}
	})
	cur.PrintDefaults()
}

// parse parses args, checks every value the user set and applies the log
// level.
func (r *settings) parse(args []string) error {
	if err := r.fs.Parse(args); err != nil {
		return err
	}
	for _, s := range r.all {
		if s.from == "" {
			continue
		}
		if err := s.parse(s.typed); err != nil {
			return fmt.Errorf("%s: %q: %w", s.from, s.typed, err)
		}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: r.logLevel})))
	return nil
}

// str registers a string setting; required rejects an empty value.
func (r *settings) str(p *string, env string, required bool, usage string) {
	r.add(&setting{env: env, def: *p, parse: func(v string) error {
		if required && v == "" {
			return errors.New("must not be empty")
		}
		*p = v
		return nil
	}}, usage)
}

// secret registers a string setting whose default is not shown.
func (r *settings) secret(p *string, env, usage string) {
	r.add(&setting{env: env, parse: func(v string) error { *p = v; return nil }}, usage)
}

// integer registers an integer setting of at least least.
func integer[T ~int | ~int64](r *settings, p *T, env string, least T, usage string) {
	r.add(&setting{env: env, def: strconv.FormatInt(int64(*p), 10), parse: func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || T(n) < least || int64(T(n)) != n {
			return fmt.Errorf("want an integer >= %d", least)
		}
		*p = T(n)
		return nil
	}}, usage)
}

// float registers a number setting greater than 0.
func (r *settings) float(p *float64, env, usage string) {
	r.add(&setting{env: env, def: strconv.FormatFloat(*p, 'g', -1, 64), parse: func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return errors.New("want a finite number > 0")
		}
		*p = f
		return nil
	}}, usage)
}

// boolean registers a setting that is true or false (1, t, true, 0, f,
// false, ...); as a flag it needs no value.
func (r *settings) boolean(p *bool, env, usage string) {
	def := ""
	if *p {
		def = "true"
	}
	r.add(&setting{env: env, def: def, isBool: true, parse: func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false (1 or 0)")
		}
		*p = b
		return nil
	}}, usage)
}

// Lower bounds of duration settings.
const (
	anyDuration      time.Duration = 0 // 0 is meaningful
	positiveDuration time.Duration = 1 // 0 is rejected
)

// duration registers a duration setting of at least least.
func (r *settings) duration(p *time.Duration, env string, least time.Duration, usage string) {
	r.add(&setting{env: env, def: p.String(), parse: func(v string) error {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return errors.New("want a duration like 90s, 5m or 24h")
		case d < 0:
			return errors.New("must not be negative")
		case d < least && least == positiveDuration:
			return errors.New("must be > 0")
		case d < least:
			return fmt.Errorf("must be >= %s", least)
		}
		*p = d
		return nil
	}}, usage)
}

// common holds the settings every command shares.
type common struct {
	kafka       string
	partitions  int
	replication int
	ch          schemas.ClickHouseConfig
	tz          string
	loc         *time.Location
	events      string
	dlq         string
	billing     string
	tzSetting   *setting // where tz came from, to name it in an error
	sec         security
}

// register adds the shared settings with their defaults.
func (c *common) register(r *settings) {
	c.partitions, c.replication = 4, 1
	c.ch.Database, c.ch.Username = "immeter", "default"
	c.tz = schemas.DefaultTimezone
	c.events, c.dlq, c.billing = schemas.EventsTopic, schemas.DLQTopic, schemas.BillingTopic
	r.str(&c.kafka, "KAFKA_BROKERS", false, "Kafka brokers, comma-separated")
	integer(r, &c.partitions, "KAFKA_PARTITIONS", 1, "partitions of topics immeter creates")
	integer(r, &c.replication, "KAFKA_REPLICATION", 1, "replication factor of topics immeter creates")
	r.str(&c.ch.Addr, "CLICKHOUSE_ADDR", false, "ClickHouse native protocol host:port; replicas comma-separated")
	r.str(&c.ch.Cluster, "CLICKHOUSE_CLUSTER", false, "ClickHouse cluster of replicas: replicated tables, quorum writes")
	r.str(&c.ch.Database, "CLICKHOUSE_DATABASE", true, "ClickHouse database")
	r.str(&c.ch.Username, "CLICKHOUSE_USER", true, "ClickHouse user")
	r.secret(&c.ch.Password, "CLICKHOUSE_PASSWORD", "ClickHouse password")
	c.sec.register(r)
	registerClickHouseTLS(r, &c.ch)
	r.str(&c.tz, "BILLING_TZ", true, "billing time zone: +08:00 or an IANA name")
	c.tzSetting = r.all[len(r.all)-1]
	r.str(&c.events, "EVENTS_TOPIC", true, "usage events topic")
	r.str(&c.dlq, "DLQ_TOPIC", true, "dead-letter topic")
	r.str(&c.billing, "BILLING_TOPIC", true, "billing records topic")
}

// validate checks the shared settings; needKafka and needCH say which
// services the command uses.
func (c *common) validate(needKafka, needCH bool) error {
	if needKafka && len(brokers(c.kafka)) == 0 {
		return fmt.Errorf("KAFKA_BROKERS: required (e.g. 127.0.0.1:9092)")
	}
	if err := c.sec.load(&c.ch); err != nil {
		return err
	}
	if needCH {
		if err := c.ch.Validate(); err != nil {
			return err
		}
	}
	loc, err := schemas.ParseTimezone(c.tz)
	if err != nil {
		name := "BILLING_TZ"
		if c.tzSetting != nil && c.tzSetting.from != "" {
			name = c.tzSetting.from // as the user typed it: the variable or -tz
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	c.loc = loc
	if c.events == c.dlq {
		return fmt.Errorf("DLQ_TOPIC: must differ from EVENTS_TOPIC (%s)", c.events)
	}
	return nil
}

func (c *common) clickhouse(ctx context.Context) (driver.Conn, error) {
	conn, err := schemas.OpenClickHouse(ctx, c.ch)
	return telemetry.ClickHouse(conn), err
}

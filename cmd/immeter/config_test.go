package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// settingVars are the environment variables the commands read; each case
// starts with all of them unset but the ones it sets.
var settingVars = []string{
	"KAFKA_BROKERS", "KAFKA_PARTITIONS", "KAFKA_REPLICATION", "CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE",
	"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "BILLING_TZ", "EVENTS_TOPIC", "DLQ_TOPIC", "BILLING_TOPIC",
	"AGGREGATE_GROUP", "FLUSH_INTERVAL", "MAX_EVENT_AGE", "DEDUP_FILTER_BITS", "MAX_EVENT_FUTURE", "AGGREGATE_SESSION_TIMEOUT",
	"PLANS_FILE", "ROLLUP_INTERVAL", "SETTLE_AFTER", "ROLLUP_TICK", "ALERTS_TOPIC", "ALERT_INTERVAL", "ALERT_SWEEP",
	"IMMETER_SECRETS_FILE", "INGEST_ADDR",
	"INGEST_MAX_BODY_BYTES", "INGEST_MAX_EVENT_BYTES", "INGEST_MAX_CLOCK_SKEW", "INGEST_PUBLISH_TIMEOUT",
	"LOG_LEVEL", "STATUS_EVERY", "SIM_RATE", "SIM_APPS", "SIMULATE",
	"SIM_FIRST_APP", "SIM_USERS", "SIM_DURATION", "SIM_EVENTS", "SIM_SEED",
	"CONSOLE_ADDR", "CONSOLE_STAFF_TOKEN", "CONSOLE_STAFF_TOKEN_FILE", "CONSOLE_SECRETS_FILE", "CONSOLE_REFRESH",
}

// setEnv sets exactly the variables of kv ("NAME=value") for the test.
func setEnv(t *testing.T, kv []string) {
	t.Helper()
	for _, name := range settingVars {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	for _, s := range kv {
		name, v, _ := strings.Cut(s, "=")
		t.Setenv(name, v)
	}
}

// services are the settings every command that talks to both needs.
var services = []string{"KAFKA_BROKERS=127.0.0.1:9", "CLICKHOUSE_ADDR=127.0.0.1:9"}

func checkErr(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return true
	}
	if err == nil || err.Error() != wantErr && !strings.HasPrefix(err.Error(), wantErr) {
		t.Fatalf("unexpected error; got %v; want %q", err, wantErr)
	}
	return false
}

// TestAggregateSettings checks that every value typed for the aggregator is
// honoured or rejected by its name, as typed.
func TestAggregateSettings(t *testing.T) {
	f := func(env, args []string, wantErr string, check func(o *aggregateOptions)) {
		t.Helper()
		setEnv(t, append(append([]string{}, services...), env...))
		o, err := parseAggregate(args)
		if checkErr(t, err, wantErr) && check != nil {
			check(o)
		}
	}
	f(nil, nil, "", func(o *aggregateOptions) {
		if o.cfg.Group != "immeter-aggregate" || o.cfg.FlushInterval != time.Second || o.cfg.MaxPast != 62*24*time.Hour ||
			o.cfg.MaxFuture != 10*time.Minute || o.cfg.SessionTimeout != 10*time.Second || o.partitions != 4 {
			t.Fatalf("unexpected defaults; got %+v", o.cfg)
		}
	})
	f([]string{"MAX_EVENT_FUTURE=0"}, nil, "", func(o *aggregateOptions) {
		if o.cfg.MaxFuture != 0 {
			t.Fatalf("MAX_EVENT_FUTURE=0 not honoured; got %s", o.cfg.MaxFuture)
		}
	})
	f([]string{"MAX_EVENT_AGE=720h", "FLUSH_INTERVAL=250ms", "AGGREGATE_SESSION_TIMEOUT=6s", "AGGREGATE_GROUP=g2"}, nil, "", func(o *aggregateOptions) {
		if o.cfg.MaxPast != 720*time.Hour || o.cfg.FlushInterval != 250*time.Millisecond || o.cfg.SessionTimeout != 6*time.Second || o.cfg.Group != "g2" {
			t.Fatalf("values not honoured; got %+v", o.cfg)
		}
	})
	f([]string{"DEDUP_FILTER_BITS=16"}, nil, "", func(o *aggregateOptions) {
		if o.cfg.DedupFilterBits != 16 {
			t.Fatalf("DEDUP_FILTER_BITS=16 not honoured; got %v", o.cfg.DedupFilterBits)
		}
	})
	f([]string{"DEDUP_FILTER_BITS=100"}, nil, `DEDUP_FILTER_BITS: must be within 0…64; got 100`, nil)
	f([]string{"DEDUP_FILTER_BITS=0"}, nil, `DEDUP_FILTER_BITS: "0": want a finite number > 0`, nil)
	f([]string{"MAX_EVENT_AGE=0"}, nil, `MAX_EVENT_AGE: "0": must be > 0`, nil)
	f([]string{"MAX_EVENT_FUTURE=-1m"}, nil, `MAX_EVENT_FUTURE: "-1m": must not be negative`, nil)
	f([]string{"FLUSH_INTERVAL=0"}, nil, `FLUSH_INTERVAL: "0": must be > 0`, nil)
	f([]string{"FLUSH_INTERVAL=soon"}, nil, `FLUSH_INTERVAL: "soon": want a duration`, nil)
	f([]string{"AGGREGATE_SESSION_TIMEOUT=0"}, nil, `AGGREGATE_SESSION_TIMEOUT: "0": must be >= 6s`, nil)
	f([]string{"AGGREGATE_SESSION_TIMEOUT=ten"}, nil, `AGGREGATE_SESSION_TIMEOUT: "ten": want a duration`, nil)
	f([]string{"AGGREGATE_GROUP="}, nil, `AGGREGATE_GROUP: "": must not be empty`, nil)
	f([]string{"KAFKA_PARTITIONS=four"}, nil, `KAFKA_PARTITIONS: "four": want an integer >= 1`, nil)
	f([]string{"KAFKA_PARTITIONS=0"}, nil, `KAFKA_PARTITIONS: "0": want an integer >= 1`, nil)
	f([]string{"LOG_LEVEL=verbose"}, nil, `LOG_LEVEL: "verbose": want debug, info, warn or error`, nil)
	f([]string{"DLQ_TOPIC=im.usage.events"}, nil, "DLQ_TOPIC: must differ from EVENTS_TOPIC", nil)
	f([]string{"BILLING_TZ=+8"}, nil, "BILLING_TZ: ", nil)
	// A flag wins over its variable, and is named as typed when bad.
	f([]string{"FLUSH_INTERVAL=soon"}, []string{"-flush-interval", "2s"}, "", func(o *aggregateOptions) {
		if o.cfg.FlushInterval != 2*time.Second {
			t.Fatalf("-flush-interval not honoured; got %s", o.cfg.FlushInterval)
		}
	})
	f(nil, []string{"-max-event-future=0", "-clickhouse-password=s3cret", "-log-level=debug"}, "", func(o *aggregateOptions) {
		if o.cfg.MaxFuture != 0 || o.ch.Password != "s3cret" {
			t.Fatalf("flags not honoured; got %s %q", o.cfg.MaxFuture, o.ch.Password)
		}
	})
	f(nil, []string{"-aggregate-session-timeout=1s"}, `-aggregate-session-timeout: "1s": must be >= 6s`, nil)
	f([]string{"CLICKHOUSE_PASSWORD=pw"}, nil, "", func(o *aggregateOptions) {
		if o.ch.Password != "pw" {
			t.Fatalf("CLICKHOUSE_PASSWORD not honoured; got %q", o.ch.Password)
		}
	})
}

// TestRollupSettings: SETTLE_AFTER=0 means final records right at the end
// of the month; what cannot work is rejected by name.
func TestRollupSettings(t *testing.T) {
	f := func(env []string, wantErr string, check func(s *rollupSettings)) {
		t.Helper()
		setEnv(t, append(append([]string{}, services...), env...))
		_, s, err := parseRollup(nil)
		if checkErr(t, err, wantErr) && check != nil {
			check(s)
		}
	}
	f(nil, "", func(s *rollupSettings) {
		if s.cfg.SettleAfter != 24*time.Hour || s.cfg.Interval != time.Hour || s.cfg.CorrectionMonths != 2 || s.tick != time.Minute {
			t.Fatalf("unexpected defaults; got %+v tick %s", s.cfg, s.tick)
		}
	})
	f([]string{"SETTLE_AFTER=0"}, "", func(s *rollupSettings) {
		if s.cfg.SettleAfter != 0 {
			t.Fatalf("SETTLE_AFTER=0 not honoured; got %s", s.cfg.SettleAfter)
		}
	})
	f([]string{"SETTLE_AFTER=72h"}, "", func(s *rollupSettings) {
		if s.cfg.SettleAfter != 72*time.Hour {
			t.Fatalf("SETTLE_AFTER not honoured; got %s", s.cfg.SettleAfter)
		}
	})
	f([]string{"SETTLE_AFTER=-1h"}, `SETTLE_AFTER: "-1h": must not be negative`, nil)
	f([]string{"SETTLE_AFTER=2000h"}, "SETTLE_AFTER: must be shorter than 56 days", nil)
	f([]string{"ROLLUP_INTERVAL=0"}, `ROLLUP_INTERVAL: "0": must be > 0`, nil)
	f([]string{"ROLLUP_TICK=x"}, `ROLLUP_TICK: "x": want a duration`, nil)
	f([]string{"PLANS_FILE=/nonexistent/plans.yaml"}, "PLANS_FILE: ", nil)
	f(nil, "", func(s *rollupSettings) {
		if s.alert.Topic != schemas.AlertsTopic || s.alert.Interval != time.Second || s.alert.Sweep != 10*time.Minute {
			t.Fatalf("unexpected alert defaults; got %+v", s.alert)
		}
	})
	f([]string{"ALERTS_TOPIC=my.alerts", "ALERT_INTERVAL=250ms"}, "", func(s *rollupSettings) {
		if s.alert.Topic != "my.alerts" || s.alert.Interval != 250*time.Millisecond {
			t.Fatalf("ALERTS_TOPIC, ALERT_INTERVAL not honoured; got %+v", s.alert)
		}
	})
	f([]string{"ALERT_INTERVAL=0"}, `ALERT_INTERVAL: "0": must be > 0`, nil)
	f([]string{"ALERT_SWEEP=0s"}, `ALERT_SWEEP: "0s": must be > 0`, nil)
	f([]string{"ALERTS_TOPIC=im.billing.monthly"}, `ALERTS_TOPIC: "im.billing.monthly" is already`, nil)
}

// writeSecrets writes a gateway secrets file and returns its path.
func writeSecrets(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(p, []byte("1400000001=s3cret-s3cret-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIngestSettings: the gateway limits are honoured or rejected by name.
func TestIngestSettings(t *testing.T) {
	secrets := "IMMETER_SECRETS_FILE=" + writeSecrets(t)
	f := func(env []string, wantErr string, check func(o *ingestOptions)) {
		t.Helper()
		setEnv(t, append([]string{"KAFKA_BROKERS=127.0.0.1:9", secrets}, env...))
		o, err := parseIngest(nil)
		if checkErr(t, err, wantErr) && check != nil {
			check(o)
		}
	}
	f(nil, "", func(o *ingestOptions) {
		if o.gw.MaxBodyBytes != 4<<20 || o.gw.MaxEventBytes != 16<<10 || o.gw.MaxClockSkew != 5*time.Minute || o.gw.Addr != ":8080" {
			t.Fatalf("unexpected defaults; got %+v", o.gw)
		}
	})
	f([]string{"INGEST_MAX_BODY_BYTES=100", "INGEST_MAX_EVENT_BYTES=50", "INGEST_MAX_CLOCK_SKEW=30s"}, "", func(o *ingestOptions) {
		if o.gw.MaxBodyBytes != 100 || o.gw.MaxEventBytes != 50 || o.gw.MaxClockSkew != 30*time.Second {
			t.Fatalf("limits not honoured; got %+v", o.gw)
		}
	})
	f([]string{"INGEST_MAX_CLOCK_SKEW=0"}, `INGEST_MAX_CLOCK_SKEW: "0": must be > 0`, nil)
	f([]string{"INGEST_MAX_BODY_BYTES=-1"}, `INGEST_MAX_BODY_BYTES: "-1": want an integer >= 1`, nil)
	f([]string{"INGEST_MAX_EVENT_BYTES=16k"}, `INGEST_MAX_EVENT_BYTES: "16k": want an integer >= 1`, nil)
	f([]string{"KAFKA_REPLICATION=0"}, `KAFKA_REPLICATION: "0": want an integer >= 1`, nil)
	f([]string{"IMMETER_SECRETS_FILE="}, `IMMETER_SECRETS_FILE: "": must not be empty`, nil)
	f([]string{"LOG_LEVEL=loud"}, `LOG_LEVEL: "loud": want debug, info, warn or error`, nil)
}

// TestRunSettings: `immeter run` honours the same settings as the commands
// it combines, the gateway limits among them.
func TestRunSettings(t *testing.T) {
	secrets := "IMMETER_SECRETS_FILE=" + writeSecrets(t)
	f := func(env []string, wantErr string, check func(o *runOptions)) {
		t.Helper()
		setEnv(t, append(append([]string{secrets}, services...), env...))
		o, err := parseRun(nil)
		if checkErr(t, err, wantErr) && check != nil {
			check(o)
		}
	}
	f([]string{"INGEST_MAX_BODY_BYTES=100", "INGEST_MAX_EVENT_BYTES=50", "INGEST_MAX_CLOCK_SKEW=30s", "INGEST_ADDR=127.0.0.1:18080"}, "", func(o *runOptions) {
		if o.gw.MaxBodyBytes != 100 || o.gw.MaxEventBytes != 50 || o.gw.MaxClockSkew != 30*time.Second || o.gw.Addr != "127.0.0.1:18080" {
			t.Fatalf("gateway settings not honoured; got %+v", o.gw)
		}
	})
	f([]string{"SETTLE_AFTER=0", "MAX_EVENT_FUTURE=0"}, "", func(o *runOptions) {
		if o.roll.cfg.SettleAfter != 0 || o.agg.MaxFuture != 0 {
			t.Fatalf("zeros not honoured; got SETTLE_AFTER %s MAX_EVENT_FUTURE %s", o.roll.cfg.SettleAfter, o.agg.MaxFuture)
		}
	})
	f([]string{"INGEST_MAX_CLOCK_SKEW=0"}, `INGEST_MAX_CLOCK_SKEW: "0": must be > 0`, nil)
	f([]string{"AGGREGATE_SESSION_TIMEOUT=0"}, `AGGREGATE_SESSION_TIMEOUT: "0": must be >= 6s`, nil)
	f([]string{"STATUS_EVERY=0"}, `STATUS_EVERY: "0": must be > 0`, nil)
	f([]string{"SIM_APPS=0"}, `SIM_APPS: "0": want an integer >= 1`, nil)
	f([]string{"SIMULATE=yes"}, `SIMULATE: "yes": want true or false`, nil)
	f([]string{"SIMULATE=true"}, "", func(o *runOptions) {
		if !o.simulate {
			t.Fatal("SIMULATE=true not honoured")
		}
	})
	// The console: a made-up staff token unless one is set; bad tokens name
	// the setting.
	f(nil, "", func(o *runOptions) {
		if len(o.demo) != 32 || string(o.con.cfg.StaffToken) != o.demo || o.con.cfg.Addr != "127.0.0.1:8090" {
			t.Fatalf("console: want a made-up 32-character staff token on 127.0.0.1:8090; got %q %q", o.con.cfg.StaffToken, o.con.cfg.Addr)
		}
	})
	f([]string{"CONSOLE_STAFF_TOKEN=staff-token-0123456789", "CONSOLE_ADDR=127.0.0.1:0"}, "", func(o *runOptions) {
		if o.demo != "" || string(o.con.cfg.StaffToken) != "staff-token-0123456789" || o.con.cfg.Addr != "127.0.0.1:0" {
			t.Fatalf("console settings not honoured; got %q %q %q", o.demo, o.con.cfg.StaffToken, o.con.cfg.Addr)
		}
	})
	f([]string{"CONSOLE_STAFF_TOKEN=short"}, "CONSOLE_STAFF_TOKEN: must be at least 16 bytes", nil)
	f([]string{"CONSOLE_SECRETS_FILE=" + writeSecrets(t)}, "", func(o *runOptions) {
		if o.demo != "" || len(o.con.cfg.StaffToken) != 0 || string(o.con.cfg.AppTokens[1400000001]) != "s3cret-s3cret-s3cret" {
			t.Fatalf("console app tokens not honoured; got demo %q staff %q apps %v", o.demo, o.con.cfg.StaffToken, o.con.cfg.AppTokens)
		}
	})
	f([]string{"CONSOLE_SECRETS_FILE=/nonexistent"}, "CONSOLE_SECRETS_FILE: ", nil)
	f([]string{"CONSOLE_STAFF_TOKEN=staff-token-0123456789", "CONSOLE_STAFF_TOKEN_FILE=/x"}, "CONSOLE_STAFF_TOKEN_FILE: set it or CONSOLE_STAFF_TOKEN", nil)
	f([]string{"CONSOLE_REFRESH=0"}, `CONSOLE_REFRESH: "0": must be > 0`, nil)

	// Without KAFKA_BROKERS run embeds a broker; what needs the brokers is
	// checked then, the rest at once.
	setEnv(t, []string{"CLICKHOUSE_ADDR=127.0.0.1:9", "DLQ_TOPIC=im.usage.events"})
	if _, err := parseRun(nil); err == nil || !strings.HasPrefix(err.Error(), "DLQ_TOPIC: ") {
		t.Fatalf("unexpected error; got %v; want DLQ_TOPIC", err)
	}
	setEnv(t, []string{"CLICKHOUSE_ADDR=127.0.0.1:9", "SETTLE_AFTER=2000h"})
	o, err := parseRun(nil)
	if err != nil {
		t.Fatal(err)
	}
	o.kafka = "127.0.0.1:9"
	if err := o.check(); err == nil || !strings.HasPrefix(err.Error(), "SETTLE_AFTER: ") {
		t.Fatalf("unexpected error; got %v; want SETTLE_AFTER", err)
	}
}

// TestOldFlagSpellings: the flag spellings of earlier releases (-brokers,
// -topic, -kafka, -clickhouse, ...) still set their settings, each with a
// warning that names the flag to use; an error names the old flag as typed;
// -h lists only the flags named after the variables.
func TestOldFlagSpellings(t *testing.T) {
	var out bytes.Buffer
	settingsMade = func(r *settings) { r.fs.SetOutput(&out) }
	t.Cleanup(func() { settingsMade = nil })

	setEnv(t, []string{"IMMETER_SECRETS_FILE=" + writeSecrets(t)})
	o, err := parseIngest([]string{"-brokers", "127.0.0.1:1", "--topic", "old.events", "-addr=:9999", "-max-body-bytes", "100"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.brokers, ",") != "127.0.0.1:1" || o.topic != "old.events" || o.gw.Addr != ":9999" || o.gw.MaxBodyBytes != 100 {
		t.Fatalf("old spellings not honoured; got brokers %v topic %q addr %q max body %d", o.brokers, o.topic, o.gw.Addr, o.gw.MaxBodyBytes)
	}
	for _, w := range []string{"-brokers is deprecated: use -kafka-brokers (or KAFKA_BROKERS)", "-topic is deprecated: use -events-topic",
		"-addr is deprecated: use -ingest-addr", "-max-body-bytes is deprecated: use -ingest-max-body-bytes"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("no warning %q; got:\n%s", w, out.String())
		}
	}

	setEnv(t, nil)
	out.Reset()
	a, err := parseAggregate([]string{"-kafka", "127.0.0.1:2", "-clickhouse", "127.0.0.1:3", "-group", "old-group", "-max-past", "48h"})
	if err != nil {
		t.Fatal(err)
	}
	if a.kafka != "127.0.0.1:2" || a.ch.Addr != "127.0.0.1:3" || a.cfg.Group != "old-group" || a.cfg.MaxPast != 48*time.Hour {
		t.Fatalf("old spellings not honoured; got %q %q %q %s", a.kafka, a.ch.Addr, a.cfg.Group, a.cfg.MaxPast)
	}
	if n := strings.Count(out.String(), "is deprecated"); n != 4 {
		t.Errorf("want 4 warnings; got %d:\n%s", n, out.String())
	}
	_, err = parseAggregate([]string{"-kafka", "127.0.0.1:2", "-clickhouse", "127.0.0.1:3", "-session-timeout=1s"})
	checkErr(t, err, `-session-timeout: "1s": must be >= 6s`)

	out.Reset()
	if _, err := parseIngest([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: got %v; want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), "  -kafka-brokers KAFKA_BROKERS\n") || strings.Contains(out.String(), "  -brokers") {
		t.Errorf("-h lists old spellings, or not the new ones:\n%s", out.String())
	}
}

// TestFlagNames: in every command, each setting's flag is its variable in
// lower case with dashes, less IMMETER_; so the same setting has the same
// flag everywhere.
func TestFlagNames(t *testing.T) {
	for _, c := range []struct{ env, flag string }{
		{"KAFKA_BROKERS", "kafka-brokers"}, {"IMMETER_SECRETS_FILE", "secrets-file"}, {"IMMETER_RUN_DIR", "run-dir"},
		{"INGEST_MAX_BODY_BYTES", "ingest-max-body-bytes"}, {"LOG_LEVEL", "log-level"},
	} {
		if got := flagName(c.env); got != c.flag {
			t.Errorf("flagName(%s) = %s; want %s", c.env, got, c.flag)
		}
	}
	var made []*settings
	settingsMade = func(r *settings) { r.fs.SetOutput(io.Discard); made = append(made, r) }
	t.Cleanup(func() { settingsMade = nil })
	for name, run := range commands {
		args, ok := commandArgs[name]
		if !ok {
			args = []string{"-h"}
		}
		if err := run(context.Background(), args); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("immeter %s %v: %v", name, args, err)
		}
	}
	for _, r := range made {
		r.fs.VisitAll(func(f *flag.Flag) {
			if s, ok := f.Value.(*setting); ok && f.Name != flagName(s.env) {
				t.Errorf("immeter %s: flag -%s of %s; want -%s", r.fs.Name(), f.Name, s.env, flagName(s.env))
			}
		})
	}
	// Old spellings name no flag of their own.
	for env, olds := range oldFlags {
		for _, old := range olds {
			if old == flagName(env) {
				t.Errorf("oldFlags[%s] lists the current flag -%s", env, old)
			}
		}
	}
}

// TestSimulateSettings: immeter simulate's settings are honoured or
// rejected naming the variable or the flag as typed.
func TestSimulateSettings(t *testing.T) {
	f := func(env, args []string, wantErr string, check func(o *simulateOptions)) {
		t.Helper()
		setEnv(t, append([]string{"KAFKA_BROKERS=127.0.0.1:9"}, env...))
		o, err := parseSimulate(args)
		if checkErr(t, err, wantErr) && check != nil {
			check(o)
		}
	}
	f([]string{"SIM_SEED=42", "SIM_FIRST_APP=1400000100", "SIM_APPS=3"}, []string{"-sim-rate", "500"}, "", func(o *simulateOptions) {
		if o.cfg.Seed != 42 || o.cfg.FirstApp != 1400000100 || o.cfg.Apps != 3 || o.cfg.Rate != 500 || o.topic != "im.usage.events" {
			t.Fatalf("settings not honoured; got %+v topic %s", o.cfg, o.topic)
		}
	})
	f(nil, nil, "", func(o *simulateOptions) {
		if o.cfg.Seed == 0 || o.cfg.FirstApp != 1400000001 || o.cfg.Apps != 20 {
			t.Fatalf("unexpected defaults; got %+v", o.cfg)
		}
	})
	f([]string{"SIM_SEED=x"}, nil, `SIM_SEED: "x": want an unsigned integer`, nil)
	f(nil, []string{"-sim-seed", "-1"}, `-sim-seed: "-1": want an unsigned integer`, nil)
	f([]string{"SIM_FIRST_APP=0"}, nil, `SIM_FIRST_APP: "0": want an app id from 1 to 4294967295`, nil)
	f(nil, []string{"-sim-first-app=4294967296"}, `-sim-first-app: "4294967296": want an app id from 1 to 4294967295`, nil)
	f([]string{"SIM_FIRST_APP=4294967290", "SIM_APPS=10"}, nil, "SIM_FIRST_APP: 4294967290 with SIM_APPS 10 passes the largest app id", nil)
	f([]string{"KAFKA_BROKERS="}, nil, `KAFKA_BROKERS: "": must not be empty`, nil)
}

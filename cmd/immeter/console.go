package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/rollup/console"
)

func init() { commands["console"] = runConsole }

// consoleSettings are the console's settings beyond the common ones.
type consoleSettings struct {
	cfg                       console.Config
	staff, staffFile, secrets string
}

func (s *consoleSettings) register(r *settings) {
	s.cfg = console.DefaultConfig()
	r.str(&s.cfg.Addr, "CONSOLE_ADDR", true, "console listen address")
	r.secret(&s.staff, "CONSOLE_STAFF_TOKEN", "console bearer token of the staff (all apps)")
	r.str(&s.staffFile, "CONSOLE_STAFF_TOKEN_FILE", false, "file holding the staff token, instead of CONSOLE_STAFF_TOKEN")
	r.str(&s.secrets, "CONSOLE_SECRETS_FILE", false, "console tokens of app owners: lines app=token")
	r.duration(&s.cfg.Refresh, "CONSOLE_REFRESH", positiveDuration, "how often the console pages reload")
}

// configured says whether any console credential is set.
func (s *consoleSettings) configured() bool {
	return s.staff != "" || s.staffFile != "" || s.secrets != ""
}

// build completes the configuration and checks it.
func (s *consoleSettings) build(c *common, prices *rollup.PriceBook) error {
	if s.staff != "" && s.staffFile != "" {
		return errors.New("CONSOLE_STAFF_TOKEN_FILE: set it or CONSOLE_STAFF_TOKEN, not both")
	}
	s.cfg.StaffToken = []byte(s.staff)
	if s.staffFile != "" {
		b, err := os.ReadFile(s.staffFile)
		if err != nil {
			return fmt.Errorf("CONSOLE_STAFF_TOKEN_FILE: %w", err)
		}
		s.cfg.StaffToken = []byte(strings.TrimSpace(string(b)))
	}
	if s.secrets != "" {
		tokens, err := ingest.LoadSecrets(s.secrets)
		if err != nil {
			return fmt.Errorf("CONSOLE_SECRETS_FILE: %w", err)
		}
		s.cfg.AppTokens = tokens
	}
	s.cfg.Location = c.loc
	if prices != nil {
		s.cfg.Prices = prices
	}
	return s.cfg.Validate()
}

// demoToken sets a random staff token for `immeter run` when none is
// configured, and returns it to be printed.
func (s *consoleSettings) demoToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s.staff = hex.EncodeToString(b[:])
	return s.staff
}

// runConsole serves the usage console (rollup/console) until ctx is done.
func runConsole(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	r := newSettings(fs)
	var c common
	c.register(r)
	var s consoleSettings
	s.register(r)
	var plans string
	r.str(&plans, "PLANS_FILE", false, "price book YAML; default the built-in one")
	if err := r.parse(args); err != nil {
		return err
	}
	if err := c.validate(false, true); err != nil {
		return err
	}
	var prices *rollup.PriceBook
	if plans != "" {
		var err error
		if prices, err = rollup.LoadPriceBook(plans); err != nil {
			return fmt.Errorf("PLANS_FILE: %w", err)
		}
	}
	if err := s.build(&c, prices); err != nil {
		return err
	}
	conn, err := c.clickhouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	srv, err := console.New(s.cfg, conn)
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx)
}

// server returns the console of `immeter run`, listening, and prints its
// address, with the staff token when run made one up.
func (s *consoleSettings) server(conn driver.Conn, demo string) (*console.Server, net.Listener, error) {
	srv, err := console.New(s.cfg, conn)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("CONSOLE_ADDR: %w", err)
	}
	addr := ln.Addr().String()
	if demo != "" {
		fmt.Printf("console: http://%s/ (CONSOLE_STAFF_TOKEN unset; this run's staff token: %s; or open http://staff:%s@%s/)\n", addr, demo, demo, addr)
	} else {
		fmt.Printf("console: http://%s/\n", addr)
	}
	return srv, ln, nil
}

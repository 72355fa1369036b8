// Command immeter meters IM usage: it aggregates usage events from Kafka into
// ClickHouse, closes billing months and publishes billing records.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `usage: immeter <command> [flags]

Commands:
  run        all-in-one: gateway, aggregate, rollup and console (embedded Kafka when KAFKA_BROKERS is unset)
  aggregate  consume im.usage.events into ClickHouse rollups
  rollup     publish monthly billing records (daemon, or --month YYYY-MM [--final] once)
  ingest     HTTP gateway: POST /v1/events
  console    usage console: JSON API and web pages of each app's month
  simulate   publish simulated IM traffic
  usage      print an app's monthly statement
  plans      import FILE: publish the editions of many apps (app,edition,from lines) as plan events
  migrate    apply the ClickHouse migrations
  accept-gap record the offsets a stuck partition cannot aggregate, and go on past them
  bench      end-to-end benchmark on private topics and a private database (BENCHMARKS.md)

Run 'immeter <command> -h' for the flags of a command. Every flag can also be
set by the environment variable named in its help.
`

var commands = map[string]func(ctx context.Context, args []string) error{}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "immeter: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfiles := startProfiles(os.Args[1])
	err := cmd(ctx, os.Args[2:])
	stopProfiles()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "immeter %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// brokers splits a comma-separated broker list.
func brokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

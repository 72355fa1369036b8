package e2ebench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/internal/simulate"
)

// newGenerator returns the load: apps Zipf-skewed, users Zipf-skewed per
// app, stamped with the clock (so the aggregator's time window accepts them).
func newGenerator(apps, users int, newUsers float64, seed uint64) (*simulate.Stream, error) {
	return simulate.New(simulate.Config{
		Apps: apps, Users: users, NewUsers: newUsers, Seed: seed, Duplicates: 0.001,
		Time: func(uint64) time.Time { return time.Now() },
	})
}

// batchSize is the number of events the generator hands a writer at once.
const batchSize = 2000

type batch struct {
	msgs []kafka.Message
	buf  []byte
}

// produce writes events of gen to the events topic: max of them as fast as
// it can when perSec is 0, else perSec a second until until (or max). It
// returns how many Kafka acknowledged.
func (e *env) produce(ctx context.Context, gen *simulate.Stream, max int64, perSec float64, until time.Time) (int64, error) {
	w := &kafka.Writer{
		Addr:         kafka.TCP(e.cfg.Brokers...),
		Topic:        e.events,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll, // as the ingest producer
		BatchSize:    batchSize,
		BatchBytes:   16 << 20,
		BatchTimeout: 2 * time.Millisecond,
		Transport:    &kafka.Transport{},
	}
	defer w.Close()
	const writers = 6
	todo := make(chan *batch, writers)
	free := make(chan *batch, 2*writers)
	for range 2 * writers {
		free <- &batch{msgs: make([]kafka.Message, 0, batchSize), buf: make([]byte, 0, batchSize*200)}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked int64
		werr  error
	)
	for range writers {
		wg.Go(func() {
			for b := range todo {
				err := w.WriteMessages(ctx, b.msgs...)
				mu.Lock()
				if err != nil && werr == nil {
					werr = err
				} else if err == nil {
					acked += int64(len(b.msgs))
				}
				mu.Unlock()
				b.msgs, b.buf = b.msgs[:0], b.buf[:0]
				free <- b
			}
		})
	}
	fill := func(b *batch, n int) {
		for range n {
			start := len(b.buf)
			var app uint32
			app, b.buf = gen.Next(b.buf)
			mid := len(b.buf)
			b.buf = strconv.AppendUint(b.buf, uint64(app), 10)
			b.msgs = append(b.msgs, kafka.Message{Value: b.buf[start:mid:mid], Key: b.buf[mid:len(b.buf):len(b.buf)]})
		}
	}
	var sent int64
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
loop:
	for ctx.Err() == nil && (max == 0 || sent < max) {
		due := batchSize
		if perSec > 0 {
			if !time.Now().Before(until) {
				break
			}
			due = int(perSec*time.Since(start).Seconds()) - int(sent)
			if due <= 0 {
				select {
				case <-ctx.Done():
					break loop
				case <-tick.C:
				}
				continue
			}
		}
		if max > 0 {
			due = int(min(int64(due), max-sent))
		}
		for due > 0 {
			if perSec > 0 && !time.Now().Before(until) {
				break loop // what was not offered in time is not offered
			}
			var b *batch
			select {
			case b = <-free:
			case <-ctx.Done():
				break loop
			}
			n := min(due, batchSize)
			// Arenas hold the messages: grow them before filling, as
			// the messages point into them.
			if cap(b.buf) < n*400 {
				b.buf = make([]byte, 0, n*400)
			}
			fill(b, n)
			due -= n
			sent += int64(n)
			todo <- b
		}
	}
	close(todo)
	wg.Wait()
	if werr != nil {
		return acked, werr
	}
	return acked, ctx.Err()
}

// simulate runs `immeter simulate` at perSec for d on the events topic.
func (e *env) simulate(ctx context.Context, perSec float64, d time.Duration, seed int) error {
	log, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("simulate-%d.log", seed)))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, e.cfg.Binary, "simulate",
		"--kafka-brokers", joinBrokers(e.cfg.Brokers), "--events-topic", e.events,
		"--sim-apps", strconv.Itoa(e.cfg.Apps), "--sim-users", "1000",
		"--sim-rate", strconv.FormatFloat(perSec, 'f', 0, 64), "--sim-duration", d.String(),
		"--sim-seed", strconv.Itoa(seed))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("immeter simulate: %w (log %s)", err, log.Name())
	}
	return nil
}

func joinBrokers(bs []string) string {
	s := ""
	for i, b := range bs {
		if i > 0 {
			s += ","
		}
		s += b
	}
	return s
}

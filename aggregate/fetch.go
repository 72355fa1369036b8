package aggregate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// batch is the messages of one fetch, keys and values copied into one
// buffer: handing over a batch instead of a message at a time saves the
// consumer most of the cost of kafka-go's Reader (a channel operation and
// two allocations per message). Batches are reused: the aggregator keeps
// nothing of a message's bytes once it is applied.
type batch struct {
	offsets []int64
	ends    []int32 // message i's key is data[ends[2i-1]:ends[2i]], its value data[ends[2i]:ends[2i+1]]
	data    []byte
	// lastTime is the Kafka timestamp (Unix ns) of the last message.
	lastTime int64
}

func (b *batch) len() int { return len(b.offsets) }

func (b *batch) message(i int) (offset int64, key, value []byte) {
	start := int32(0)
	if i > 0 {
		start = b.ends[2*i-1]
	}
	k, v := b.ends[2*i], b.ends[2*i+1]
	return b.offsets[i], b.data[start:k:k], b.data[k:v:v]
}

// fetcher reads one partition from an offset on, a fetch request at a time,
// one fetch ahead of its consumer.
type fetcher struct {
	client     *kafka.Client
	transport  *kafka.Transport // the client's
	brokers    []string
	raw        bool      // fetch through rawFetch; false once the broker's version is not parsed
	rawReq     *rawFetch // reused once its answer is read
	rawRefused bool      // an answer was left to kafka-go (logged once)
	parser     recordsParser
	topic      string
	partition  int
	log        *slog.Logger
	batches    chan *batch // fetched, in order
	free       chan *batch // folded, to reuse
	failed     chan error  // why the fetcher stopped before its context ended
	m          *partitionMetrics
}

func newFetcher(brokers []string, sec *kafka.Transport, topic string, partition int, log *slog.Logger) *fetcher {
	// Its own connections and metadata: a fetch waits up to fetchWait at
	// the broker, and must not queue behind others. sec gives its SASL and
	// TLS settings.
	tr := &kafka.Transport{MetadataTTL: 2 * time.Second, SASL: sec.SASL, TLS: sec.TLS}
	return &fetcher{
		client:    &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr},
		transport: tr,
		brokers:   brokers,
		raw:       true,
		topic:     topic,
		partition: partition,
		log:       log,
		batches:   make(chan *batch, 1),
		free:      make(chan *batch, 3),
		failed:    make(chan error, 1),
	}
}

// recycle gives a folded batch back for reuse.
func (f *fetcher) recycle(b *batch) {
	f.m.appliedBatch(b)
	select {
	case f.free <- b:
	default:
	}
}

const (
	fetchBytes = 2 << 20
	fetchWait  = 100 * time.Millisecond
	// fetchTimeout bounds a fetch through rawFetch: a connection that
	// went silent is closed and the fetch retried.
	fetchTimeout = 30 * time.Second
)

// run fetches from offset on into f.batches until ctx ends. A failing fetch
// is retried with backoff (100 ms to 5 s), never skipped; an offset out of
// range (events deleted by retention before they were aggregated, or a
// topic recreated) stops the fetcher with the error on f.failed: the
// aggregator checks the log's offsets and holds the partition stuck.
func (f *fetcher) run(ctx context.Context, offset int64) {
	defer f.transport.CloseIdleConnections()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		b, next, err := f.fetch(ctx, offset)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.m.fetchFailed(err)
			if errors.Is(err, kafka.OffsetOutOfRange) {
				f.failed <- err
				return
			}
			f.log.Warn("aggregate: fetch; retrying", "offset", offset, "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		offset = next
		if b.len() == 0 {
			continue
		}
		select {
		case f.batches <- b:
		case <-ctx.Done():
			return
		}
	}
}

// fetch reads the messages from offset on that one fetch returns, and the
// offset to fetch next. It reads the answer itself (rawFetch) and leaves to
// kafka-go what it does not parse.
func (f *fetcher) fetch(ctx context.Context, offset int64) (*batch, int64, error) {
	f.m.fetching()
	b := f.freeBatch()
	if f.raw {
		next, err := f.fetchRaw(ctx, b, offset)
		switch {
		case err == nil:
			return b, next, nil
		case errors.Is(err, errRawVersion):
			f.raw = false // the broker's versions do not change under a connection pool
			f.log.Info("aggregate: fetch answers read by kafka-go", "err", err)
		case !errors.Is(err, errRawFormat):
			return nil, offset, err
		case !f.rawRefused:
			f.rawRefused = true
			f.log.Info("aggregate: a fetch answer read by kafka-go (logged once)", "offset", offset, "err", err)
		}
		b.offsets, b.ends, b.data = b.offsets[:0], b.ends[:0], b.data[:0]
	}
	return f.fetchLibrary(ctx, b, offset)
}

// freeBatch returns an empty batch to fill.
func (f *fetcher) freeBatch() *batch {
	select {
	case b := <-f.free:
		b.offsets, b.ends, b.data = b.offsets[:0], b.ends[:0], b.data[:0]
		return b
	default:
		return &batch{data: make([]byte, 0, fetchBytes+fetchBytes/4)}
	}
}

// fetchRaw fills b with one fetch through rawFetch.
func (f *fetcher) fetchRaw(ctx context.Context, b *batch, offset int64) (int64, error) {
	r := f.rawReq
	f.rawReq = nil // back once its answer is read: a fetch cut off by ctx may still write into it
	if r == nil {
		r = &rawFetch{clientID: f.transport.ClientID}
	}
	r.req = fetchAPI.Request{
		ReplicaID: -1, MaxWaitTime: int32(fetchWait / time.Millisecond),
		MinBytes: 1, MaxBytes: fetchBytes, SessionID: -1, SessionEpoch: -1,
		Topics: []fetchAPI.RequestTopic{{Topic: f.topic, Partitions: []fetchAPI.RequestPartition{{
			Partition: int32(f.partition), CurrentLeaderEpoch: -1, FetchOffset: offset,
			LogStartOffset: -1, PartitionMaxBytes: fetchBytes,
		}}}},
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	m, err := f.transport.RoundTrip(ctx, kafka.TCP(f.brokers...), r)
	if err != nil {
		if errors.Is(err, errRawVersion) {
			return offset, err
		}
		return offset, fmt.Errorf("fetch %s/%d at %d: %w", f.topic, f.partition, offset, err)
	}
	if m != r {
		return offset, errRawFormat
	}
	p, err := r.parse(f.topic, int32(f.partition))
	if err != nil {
		return offset, err
	}
	if p.err != nil {
		// The log's offsets are -1 in an error answer: the aggregator asks
		// for them (ListOffsets) when it matters.
		return offset, fmt.Errorf("fetch %s/%d at %d: %w", f.topic, f.partition, offset, p.err)
	}
	f.m.fetched(p.highWatermark)
	next, err := f.parser.appendRecords(b, p.records, offset)
	f.rawReq = r
	return next, err
}

// fetchLibrary fills b with one fetch through kafka.Client.
func (f *fetcher) fetchLibrary(ctx context.Context, b *batch, offset int64) (*batch, int64, error) {
	res, err := f.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: f.topic, Partition: f.partition, Offset: offset,
		MinBytes: 1, MaxBytes: fetchBytes, MaxWait: fetchWait,
	})
	if err != nil {
		return nil, offset, err
	}
	if res.Error != nil {
		return nil, offset, fmt.Errorf("fetch %s/%d at %d: %w", f.topic, f.partition, offset, res.Error)
	}
	f.m.fetched(res.HighWatermark)
	for {
		r, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return b, offset, nil
		}
		if err != nil {
			// A truncated last batch ends a fetch: what was read is good.
			if b.len() > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
				return b, offset, nil
			}
			return nil, offset, fmt.Errorf("read records of %s/%d at %d: %w", f.topic, f.partition, offset, err)
		}
		// A fetch returns whole record batches, which may start before
		// the offset asked for.
		if r.Offset < offset {
			continue
		}
		if b.data, err = appendBytes(b.data, r.Key); err == nil {
			b.ends = append(b.ends, int32(len(b.data)))
			b.data, err = appendBytes(b.data, r.Value)
		}
		if err != nil {
			return nil, offset, fmt.Errorf("read record %s/%d at %d: %w", f.topic, f.partition, r.Offset, err)
		}
		b.ends = append(b.ends, int32(len(b.data)))
		b.offsets = append(b.offsets, r.Offset)
		b.lastTime = r.Time.UnixNano()
		offset = r.Offset + 1
	}
}

// appendBytes appends the content of a record's key or value to dst.
func appendBytes(dst []byte, src protocol.Bytes) ([]byte, error) {
	if src == nil {
		return dst, nil
	}
	defer src.Close()
	n := src.Len()
	dst = append(dst, make([]byte, n)...)
	_, err := io.ReadFull(src, dst[len(dst)-n:])
	return dst, err
}

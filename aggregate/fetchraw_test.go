package aggregate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/immeter/immeter/ingest"
	"github.com/immeter/immeter/internal/testenv"
)

// fetched is what a batch holds, for comparisons.
type fetched struct {
	offsets    []int64
	keys, vals []string
	lastTime   int64
}

func contents(b *batch) fetched {
	var f fetched
	for i := range b.len() {
		o, k, v := b.message(i)
		f.offsets = append(f.offsets, o)
		f.keys = append(f.keys, string(k))
		f.vals = append(f.vals, string(v))
	}
	f.lastTime = b.lastTime
	return f
}

// add appends c's records.
func (f *fetched) add(c fetched) {
	f.offsets, f.keys, f.vals = append(f.offsets, c.offsets...), append(f.keys, c.keys...), append(f.vals, c.vals...)
	f.lastTime = c.lastTime
}

func (f fetched) String() string {
	return fmt.Sprintf("%d records, offsets %v, lastTime %d", len(f.offsets), f.offsets, f.lastTime)
}

func equalFetched(a, b fetched) bool {
	if len(a.offsets) != len(b.offsets) || a.lastTime != b.lastTime {
		return false
	}
	for i := range a.offsets {
		if a.offsets[i] != b.offsets[i] || a.keys[i] != b.keys[i] || a.vals[i] != b.vals[i] {
			return false
		}
	}
	return true
}

// recordBatch encodes records as one record batch of magic 2 with kafka-go's
// encoder, at base offset base.
func recordBatch(t *testing.T, base int64, attrs protocol.Attributes, recs []protocol.Record) []byte {
	t.Helper()
	rs := protocol.RecordSet{Version: 2, Attributes: attrs, Records: protocol.NewRecordReader(recs...)}
	var buf bytes.Buffer
	if _, err := rs.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[4:] // less the set's size
	binary.BigEndian.PutUint64(b, uint64(base))
	return b
}

// libraryRecords reads record batches with kafka-go's decoder, as the
// fetcher did before rawFetch: from offset on, a truncated last batch ending
// the fetch.
func libraryRecords(data []byte, offset int64) (fetched, error) {
	var f fetched
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(data)))
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bytes.NewReader(append(size[:], data...))); err != nil {
		return f, err
	}
	if rs.Records == nil {
		return f, nil
	}
	for {
		r, err := rs.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			if len(f.offsets) > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
				return f, nil
			}
			return f, err
		}
		if r.Offset < offset {
			continue
		}
		var k, v []byte
		if r.Key != nil {
			k, _ = io.ReadAll(r.Key)
		}
		if r.Value != nil {
			v, _ = io.ReadAll(r.Value)
		}
		f.offsets = append(f.offsets, r.Offset)
		f.keys = append(f.keys, string(k))
		f.vals = append(f.vals, string(v))
		f.lastTime = r.Time.UnixNano()
	}
}

func randomRecords(rng *rand.Rand, n int, t0 time.Time) []protocol.Record {
	recs := make([]protocol.Record, n)
	for i := range recs {
		r := protocol.Record{Time: t0.Add(time.Duration(rng.IntN(5000)-1000) * time.Millisecond)}
		switch rng.IntN(4) {
		case 0: // no key
		case 1:
			r.Key = protocol.NewBytes([]byte{})
		default:
			r.Key = protocol.NewBytes(fmt.Appendf(nil, "%d", rng.Uint32()))
		}
		if rng.IntN(10) > 0 {
			v := make([]byte, rng.IntN(300))
			for j := range v {
				v[j] = byte('a' + rng.IntN(26))
			}
			r.Value = protocol.NewBytes(v)
		}
		for range rng.IntN(3) {
			r.Headers = append(r.Headers, protocol.Header{Key: "h", Value: []byte("header value")})
		}
		recs[i] = r
	}
	return recs
}

var codecs = []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd}

// TestAppendRecordsMatchesKafkaGo: the records parsed from record batches
// (every codec, null and empty keys and values, headers, batches starting
// before the offset asked for, a last batch cut short) equal kafka-go's.
func TestAppendRecordsMatchesKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.UnixMilli(1764547200123)
	var rp recordsParser
	for trial := range 200 {
		var data []byte
		base := int64(rng.IntN(1000))
		first := base
		batches := 1 + rng.IntN(5)
		for i := range batches {
			n := 1 + rng.IntN(40)
			attrs := protocol.Attributes(codecs[rng.IntN(len(codecs))])
			if i > 0 && i < batches-1 && rng.IntN(3) == 0 {
				attrs |= attrControl // a transaction's marker, skipped by both
			}
			data = append(data, recordBatch(t, base, attrs, randomRecords(rng, n, t0))...)
			base += int64(n)
		}
		cuts := []int{len(data), len(data) - 1 - rng.IntN(len(data)/2)}
		for _, cut := range cuts {
			offset := first + int64(rng.IntN(int(base-first)))
			want, werr := libraryRecords(data[:cut], offset)
			var b batch
			next, err := rp.appendRecords(&b, data[:cut], offset)
			got := contents(&b)
			switch {
			case werr != nil:
				if !errors.Is(err, errRawFormat) {
					t.Fatalf("trial %d, cut %d/%d: kafka-go: %v; here %v, want errRawFormat", trial, cut, len(data), werr, err)
				}
			case err != nil:
				t.Fatalf("trial %d, cut %d/%d: %v; kafka-go read %s", trial, cut, len(data), err, want)
			case !equalFetched(got, want):
				t.Fatalf("trial %d, cut %d/%d, from %d:\n got  %s\n want %s", trial, cut, len(data), offset, got, want)
			case next != wantNext(data[:cut], offset, want):
				t.Fatalf("trial %d: next offset %d after %s; want %d", trial, next, want, wantNext(data[:cut], offset, want))
			}
		}
	}
}

// wantNext is the offset a fetch of data from offset goes on from: after
// its last record, or after a whole control batch that follows it.
func wantNext(data []byte, offset int64, got fetched) int64 {
	next := offset
	if n := len(got.offsets); n > 0 {
		next = got.offsets[n-1] + 1
	}
	for len(data) >= batchHeader {
		base := int64(binary.BigEndian.Uint64(data))
		end := 12 + int(binary.BigEndian.Uint32(data[8:]))
		if end > len(data) {
			break
		}
		if binary.BigEndian.Uint16(data[batchAttributes:])&attrControl != 0 {
			next = max(next, base+int64(binary.BigEndian.Uint32(data[batchLastDelta:]))+1)
		}
		data = data[end:]
	}
	return next
}

// TestAppendRecordsLeavesToKafkaGo: what only kafka-go parses is refused
// with errRawFormat, so the fetch asks kafka-go.
func TestAppendRecordsLeavesToKafkaGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	good := recordBatch(t, 0, 0, randomRecords(rng, 5, time.Now()))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	magic1 := bytes.Clone(good)
	magic1[batchMagic] = 1
	codec7 := recordBatch(t, 0, 0, randomRecords(rng, 5, time.Now()))
	binary.BigEndian.PutUint16(codec7[batchAttributes:], 7)
	binary.BigEndian.PutUint32(codec7[batchCRC:], crc32Of(codec7[batchAttributes:]))
	for name, data := range map[string][]byte{
		"bad CRC":                   badCRC,
		"magic 1":                   magic1,
		"unknown codec":             codec7,
		"a header cut short":        good[:10],
		"batch length below header": binary.BigEndian.AppendUint32(make([]byte, 8), 10),
	} {
		var rp recordsParser
		var b batch
		if _, err := rp.appendRecords(&b, data, 0); !errors.Is(err, errRawFormat) {
			t.Errorf("%s: err %v; want errRawFormat", name, err)
		}
	}
	// The good batch alone is parsed.
	var rp recordsParser
	var b batch
	if next, err := rp.appendRecords(&b, good, 0); err != nil || next != 5 || b.len() != 5 {
		t.Fatalf("good batch: next %d, %d records, err %v", next, b.len(), err)
	}
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// fetchTopic makes a topic of one partition on the real broker, deleted at
// the end, and a fetcher of it.
func fetchTopic(ctx context.Context, t *testing.T) (brokers []string, topic string, f *fetcher) {
	t.Helper()
	brokers, topic = testenv.Kafka(t), testenv.NewNames().Events
	if err := ingest.EnsureTopics(ctx, brokers, 1, 1, topic); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, brokers, topic)
	f = newFetcher(brokers, &kafka.Transport{}, topic, 0, slog.Default())
	f.m = &partitionMetrics{}
	t.Cleanup(f.transport.CloseIdleConnections)
	return brokers, topic, f
}

// TestRawFetchMatchesKafkaGo (real broker): fetches through rawFetch and
// through kafka.Client return the same records from every offset, for
// records written with every codec, and the same error past the log end.
func TestRawFetchMatchesKafkaGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, topic, f := fetchTopic(ctx, t)
	rng := rand.New(rand.NewPCG(5, 6))
	total := 0
	for round := range 3 {
		for _, c := range codecs {
			w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Compression: kafka.Compression(c),
				BatchSize: 1 + rng.IntN(200), BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
			msgs := make([]kafka.Message, 100+rng.IntN(300))
			for i := range msgs {
				m := kafka.Message{Value: fmt.Appendf(nil, `{"round":%d,"codec":%d,"i":%d,"pad":%q}`, round, c, i, bytes.Repeat([]byte("x"), rng.IntN(500)))}
				if i%7 != 0 {
					m.Key = fmt.Appendf(nil, "%d", rng.Uint32())
				}
				if i%3 == 0 {
					m.Headers = []kafka.Header{{Key: "k", Value: []byte("v")}}
				}
				msgs[i] = m
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			w.Close()
			total += len(msgs)
		}
	}
	fetchAll := func(raw bool, from int64) (fetched, error) {
		var all fetched
		for from < int64(total) {
			b := &batch{}
			var next int64
			var err error
			if raw {
				next, err = f.fetchRaw(ctx, b, from)
			} else {
				b, next, err = f.fetchLibrary(ctx, b, from)
			}
			if err != nil {
				return all, err
			}
			all.add(contents(b))
			from = next
		}
		return all, nil
	}
	for _, from := range []int64{0, 1, int64(total / 3), int64(total - 1)} {
		want, err := fetchAll(false, from)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fetchAll(true, from)
		if err != nil {
			t.Fatal(err)
		}
		if !equalFetched(got, want) || len(got.offsets) != total-int(from) {
			t.Fatalf("from %d of %d:\n raw     %d records\n kafka-go %d records", from, total, len(got.offsets), len(want.offsets))
		}
	}
	if !f.raw {
		t.Fatal("the fetcher fell back to kafka-go for good")
	}
	// Past the log end both say offset out of range.
	_, err := f.fetchRaw(ctx, &batch{}, int64(total+10))
	if !errors.Is(err, kafka.OffsetOutOfRange) {
		t.Fatalf("raw fetch past the end: %v", err)
	}
	if _, _, err := f.fetchLibrary(ctx, &batch{}, int64(total+10)); !errors.Is(err, kafka.OffsetOutOfRange) {
		t.Fatalf("kafka-go fetch past the end: %v", err)
	}
}

// TestAppendRecordsSkipsControlBatches: a transaction's markers are not
// records (kafka-go skips them too), and a fetch that ends with one goes on
// after it.
func TestAppendRecordsSkipsControlBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	first := recordBatch(t, 0, 0, randomRecords(rng, 5, time.Now()))
	marker := recordBatch(t, 5, protocol.Attributes(attrControl), randomRecords(rng, 1, time.Now()))
	then := recordBatch(t, 6, protocol.Attributes(compress.Lz4), randomRecords(rng, 3, time.Now()))
	var rp recordsParser
	var b batch
	next, err := rp.appendRecords(&b, slices.Concat(first, marker, then), 0)
	got := contents(&b)
	if err != nil || next != 9 || fmt.Sprint(got.offsets) != "[0 1 2 3 4 6 7 8]" {
		t.Fatalf("records %v, next %d, err %v; want offsets 0-4 and 6-8, next 9", got.offsets, next, err)
	}
	want, err := libraryRecords(slices.Concat(first, marker, then), 0)
	if err != nil || !equalFetched(got, want) {
		t.Fatalf("kafka-go read %s (err %v); here %s", want, err, got)
	}
	b = batch{}
	if next, err := rp.appendRecords(&b, slices.Concat(first, marker), 3); err != nil || next != 6 || b.len() != 2 {
		t.Fatalf("ending with a marker: %d records, next %d, err %v; want 2 records, next 6", b.len(), next, err)
	}
	b = batch{}
	if next, err := rp.appendRecords(&b, marker, 5); err != nil || next != 6 || b.len() != 0 {
		t.Fatalf("only a marker: %d records, next %d, err %v; want none, next 6", b.len(), next, err)
	}
}

// TestRawFetchTransactions (real broker): records a transactional producer
// committed and aborted (read uncommitted, as before) come through rawFetch
// as through kafka-go, the transactions' markers skipped, and a log that
// ends with a marker is read to its end.
func TestRawFetchTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, topic, f := fetchTopic(ctx, t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID("immeter-test-"+topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sent := 0
	for i, commit := range []bool{true, false, true, true} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 5 + i {
			r := &kgo.Record{Key: fmt.Appendf(nil, "%d", j), Value: fmt.Appendf(nil, "txn %d record %d", i, j)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		end := kgo.TryCommit
		if !commit {
			end = kgo.TryAbort
		}
		if err := cl.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	logEnd := testenv.EndOffsets(ctx, t, brokers, topic)[0]
	if logEnd != int64(sent+4) { // a marker per transaction
		t.Fatalf("log end %d; want %d records and 4 markers", logEnd, sent)
	}
	var raw, lib fetched
	for from := int64(0); from < logEnd; {
		b := &batch{}
		next, err := f.fetchRaw(ctx, b, from)
		if err != nil {
			t.Fatalf("raw fetch at %d: %v", from, err)
		}
		if next <= from {
			t.Fatalf("raw fetch at %d: next %d, no progress", from, next)
		}
		raw.add(contents(b))
		from = next
	}
	// kafka-go's own path stops at the last record: the marker after it
	// is answered again and again.
	for from := int64(0); len(lib.offsets) < sent; {
		b, next, err := f.fetchLibrary(ctx, &batch{}, from)
		if err != nil {
			t.Fatalf("kafka-go fetch at %d: %v", from, err)
		}
		lib.add(contents(b))
		if next == from {
			break
		}
		from = next
	}
	if len(raw.offsets) != sent || !equalFetched(raw, lib) {
		t.Fatalf("raw: %s\nkafka-go: %s\nwant %d records", raw, lib, sent)
	}
}

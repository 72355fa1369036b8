package aggregate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	fetchAPI "github.com/segmentio/kafka-go/protocol/fetch"
)

// rawFetch is a Fetch request that reads its answer itself. kafka-go's
// Transport still sends it: it finds the partition leader, negotiates the
// version, does TLS and SASL and keeps the connections. Only the reading of
// the answer differs: kafka-go's record decoder reads every varint a byte
// at a time through several interfaces, which was a quarter of the
// aggregator's CPU at 150k events/s; here the answer is read into one
// buffer and its records are parsed from it.
//
// It parses versions 4 to 11 of the answer (the only ones kafka-go sends
// to a broker that supports them; Kafka 4 accepts 4 and above) and record
// batches of magic 2, compressed or not, skipping transactions' control
// batches as kafka-go does. Anything else (an older version, older message
// sets, a malformed answer) is left to kafka-go: fetch asks again through
// kafka.Client.
type rawFetch struct {
	req      fetchAPI.Request
	clientID string
	version  int16  // negotiated for the connection it is sent on
	buf      []byte // the answer, less its size; reused
}

// Errors that hand a fetch over to kafka-go.
var (
	errRawVersion = errors.New("fetch version not parsed here")
	errRawFormat  = errors.New("fetch answer not parsed here")
)

const rawCorrelationID = 0x1a2b3c4d

func (r *rawFetch) ApiKey() protocol.ApiKey { return protocol.Fetch }

// Broker routes the request to the partition's leader, as kafka-go's own.
func (r *rawFetch) Broker(c protocol.Cluster) (protocol.Broker, error) { return r.req.Broker(c) }

// Required notes the version negotiated for the connection; the exchange
// is always raw.
func (r *rawFetch) Required(versions map[protocol.ApiKey]int16) bool {
	r.version = versions[protocol.Fetch]
	return true
}

// RawExchange writes the request and reads the whole answer into r.buf. It
// runs on the connection's goroutine, one request at a time.
func (r *rawFetch) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if r.version < 4 || r.version > 11 {
		return nil, errRawVersion
	}
	if err := protocol.WriteRequest(rw, r.version, rawCorrelationID, r.clientID, &r.req); err != nil {
		return nil, err
	}
	var head [8]byte
	if _, err := io.ReadFull(rw, head[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(head[:4]))
	if size < 4 {
		return nil, fmt.Errorf("fetch answer of %d bytes", size)
	}
	if id := int32(binary.BigEndian.Uint32(head[4:])); id != rawCorrelationID {
		return nil, fmt.Errorf("fetch answer for correlation id %d; want %d", id, rawCorrelationID)
	}
	n := int(size) - 4
	if cap(r.buf) < n {
		r.buf = make([]byte, n, n+n/4)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(rw, r.buf); err != nil {
		return nil, err
	}
	return r, nil
}

// rawPartition is what a fetch answer says of the one partition asked for.
type rawPartition struct {
	err           error // the answer's error, nil if none
	highWatermark int64
	records       []byte // record batches
}

// parse reads the answer in r.buf, for topic and partition.
func (r *rawFetch) parse(topic string, partition int32) (rawPartition, error) {
	var p rawPartition
	d := rawDecoder{b: r.buf}
	v := r.version
	d.int32() // throttle time (v1+)
	var code int16
	if v >= 7 {
		code = d.int16()
		d.int32() // session id
	}
	found := false
	for range d.count() {
		name := d.string()
		for range d.count() {
			id := d.int32()
			pcode := d.int16()
			hw := d.int64()
			d.int64() // last stable offset (v4+)
			if v >= 5 {
				d.int64() // log start offset
			}
			if n := d.count(); n > 0 { // aborted transactions (v4+)
				d.skip(16 * n)
			}
			if v >= 11 {
				d.int32() // preferred read replica
			}
			records := d.bytes()
			if d.err == nil && name == topic && id == partition && !found {
				found = true
				p.highWatermark, p.records = hw, records
				if pcode != 0 {
					code = pcode
				}
			}
		}
	}
	if d.err != nil || len(d.b) != 0 || !found {
		return p, errRawFormat
	}
	if code != 0 {
		p.err = kafka.Error(code)
	}
	return p, nil
}

// rawDecoder reads big-endian fields from b; past the end it sets err and
// reads zeros.
type rawDecoder struct {
	b   []byte
	err error
}

func (d *rawDecoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = errRawFormat
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *rawDecoder) skip(n int) { d.take(n) }

func (d *rawDecoder) int16() int16 {
	if s := d.take(2); s != nil {
		return int16(binary.BigEndian.Uint16(s))
	}
	return 0
}

func (d *rawDecoder) int32() int32 {
	if s := d.take(4); s != nil {
		return int32(binary.BigEndian.Uint32(s))
	}
	return 0
}

func (d *rawDecoder) int64() int64 {
	if s := d.take(8); s != nil {
		return int64(binary.BigEndian.Uint64(s))
	}
	return 0
}

// count reads an array's length; -1 (null) is 0.
func (d *rawDecoder) count() int {
	n := d.int32()
	if n < -1 || int(n) > len(d.b) { // every element is at least a byte
		d.err = errRawFormat
		return 0
	}
	return max(int(n), 0)
}

func (d *rawDecoder) string() string {
	n := d.int16()
	if n < 0 {
		return ""
	}
	return string(d.take(int(n)))
}

// bytes reads nullable bytes; null is nil.
func (d *rawDecoder) bytes() []byte {
	n := d.int32()
	if n < 0 {
		return nil
	}
	return d.take(int(n))
}

// Offsets in a record batch of magic 2 (the fields before the records).
const (
	batchLengthEnd  = 12 // base offset int64, batch length int32
	batchMagic      = 16 // after the partition leader epoch int32
	batchCRC        = 17
	batchAttributes = 21 // the CRC covers from here to the batch's end
	batchLastDelta  = 23
	batchFirstTime  = 27
	batchNumRecords = 57
	batchHeader     = 61
	attrCompression = 0x07
	attrControl     = 0x20
)

// castagnoli is the CRC table of record batches.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordsParser appends the records of a fetch to batches; scratch holds a
// decompressed batch.
type recordsParser struct {
	scratch bytes.Buffer
}

// appendRecords appends to b the records at or after offset of the record
// batches in data, and returns the offset to fetch next: after the last
// record or control batch. A batch cut short at the end of data (the
// fetch's size limit) ends it, as in kafka-go, even when it is the first.
// errRawFormat means data holds something parsed only by kafka-go: another
// magic, an unknown codec, or a malformed batch.
func (rp *recordsParser) appendRecords(b *batch, data []byte, offset int64) (int64, error) {
	complete := false // at least one whole batch
	for len(data) >= batchLengthEnd {
		base := int64(binary.BigEndian.Uint64(data))
		length := int(int32(binary.BigEndian.Uint32(data[8:])))
		if length < batchHeader-batchLengthEnd {
			return offset, errRawFormat
		}
		if length > len(data)-batchLengthEnd {
			break // cut short by the size limit
		}
		batchBytes := data[:batchLengthEnd+length]
		data = data[batchLengthEnd+length:]
		complete = true
		if batchBytes[batchMagic] != 2 {
			return offset, errRawFormat
		}
		crc := binary.BigEndian.Uint32(batchBytes[batchCRC:])
		if crc32.Checksum(batchBytes[batchAttributes:], castagnoli) != crc {
			return offset, errRawFormat
		}
		attrs := int16(binary.BigEndian.Uint16(batchBytes[batchAttributes:]))
		if attrs&attrControl != 0 {
			// A transaction's marker, not an event: kafka-go skips it too.
			// The next fetch starts after it, or a log ending with one
			// would answer it again at once, forever.
			last := base + int64(int32(binary.BigEndian.Uint32(batchBytes[batchLastDelta:])))
			offset = max(offset, last+1)
			continue
		}
		firstTime := int64(binary.BigEndian.Uint64(batchBytes[batchFirstTime:]))
		n := int(int32(binary.BigEndian.Uint32(batchBytes[batchNumRecords:])))
		recs := batchBytes[batchHeader:]
		if c := compress.Compression(attrs & attrCompression); c != 0 {
			codec := c.Codec()
			if codec == nil {
				return offset, errRawFormat
			}
			rd := codec.NewReader(bytes.NewReader(recs))
			rp.scratch.Reset()
			_, err := rp.scratch.ReadFrom(rd)
			rd.Close()
			if err != nil {
				return offset, errRawFormat
			}
			recs = rp.scratch.Bytes()
		}
		if n < 0 || n > len(recs) {
			return offset, errRawFormat
		}
		for range n {
			length, k := binary.Varint(recs)
			if k <= 0 || length < 1 || length > int64(len(recs)-k) {
				return offset, errRawFormat
			}
			rec := recs[k+1 : k+int(length)] // less the record's attributes byte
			recs = recs[k+int(length):]
			timeDelta, k1 := binary.Varint(rec)
			if k1 <= 0 {
				return offset, errRawFormat
			}
			offsetDelta, k2 := binary.Varint(rec[k1:])
			if k2 <= 0 {
				return offset, errRawFormat
			}
			rec = rec[k1+k2:]
			key, rest, ok := varBytes(rec)
			if !ok {
				return offset, errRawFormat
			}
			value, _, ok := varBytes(rest)
			if !ok {
				return offset, errRawFormat
			}
			// A batch may start before the offset asked for.
			o := base + offsetDelta
			if o < offset {
				continue
			}
			b.data = append(b.data, key...)
			b.ends = append(b.ends, int32(len(b.data)))
			b.data = append(b.data, value...)
			b.ends = append(b.ends, int32(len(b.data)))
			b.offsets = append(b.offsets, o)
			b.lastTime = (firstTime + timeDelta) * 1e6
			offset = o + 1
		}
		if len(recs) != 0 {
			return offset, errRawFormat
		}
	}
	if !complete && len(data) > 0 && len(data) <= batchMagic {
		return offset, errRawFormat // kafka-go calls it impossible
	}
	return offset, nil
}

// varBytes reads a record's key or value (varint length, -1 for null) from
// the start of b.
func varBytes(b []byte) (v, rest []byte, ok bool) {
	n, k := binary.Varint(b)
	if k <= 0 || n < -1 || n > int64(len(b)-k) {
		return nil, nil, false
	}
	if n < 0 {
		return nil, b[k:], true
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

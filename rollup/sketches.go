package rollup

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/axiomhq/hyperloglog"
)

// An app's MAU estimate is the estimate of the union of its day sketches
// of the month. Merging 2M day sketches one into another with the library
// (decode each, then Merge) cost ~5.5 s of CPU for a month of 100k apps,
// most of it re-encoding the growing sparse list after each merge. The
// estimator below reaches the same sketch with the library doing only the
// last step: it reads the sparse sketches' keys straight from their binary
// form (documented by hyperloglog's UnmarshalBinary as stable for versions
// 1 and 2), gathers each app's keys, and builds one sparse sketch of their
// union, which the library decodes, merges with the app's dense sketches
// and estimates.
//
// That is the sketch the library's merges make, whatever their order:
//   - A sparse sketch is a set of keys; merging two sparse sketches is the
//     union of their sets (tmp set and list alike), and a list keeps each
//     key once.
//   - A sparse sketch turns dense when the byte length of its list exceeds
//     m, on insertion or when estimated. Each key of the list is a varint
//     delta from the previous one, and splitting a delta in two never makes
//     it shorter, so a subset's list is never longer than its superset's:
//     an intermediate union crosses m only if the whole union does, and the
//     whole union is estimated, and so made dense, when it does.
//   - A dense sketch's registers are the maximum over the keys decoded into
//     them and the registers merged in, in any order.
//
// TestSketchUnionMatchesMerge checks this against the library's merges.

// sketchEstimator estimates the MAU of each app from its sketches, on
// workers that each own the apps of one residue of the app id.
type sketchEstimator struct {
	workers []*sketchWorker
	batches [][]sketchRow
	wg      sync.WaitGroup
}

// sketchRow is one row of user_sketches.
type sketchRow struct {
	app  uint32
	blob []byte // not written after add
}

// estimatorBatch is how many rows go to a worker at once.
const estimatorBatch = 512

func newSketchEstimator(workers int) *sketchEstimator {
	e := &sketchEstimator{workers: make([]*sketchWorker, max(workers, 1))}
	e.batches = make([][]sketchRow, len(e.workers))
	for i := range e.workers {
		w := &sketchWorker{in: make(chan []sketchRow, 4), apps: map[uint32][]*sketchUnion{}}
		e.workers[i] = w
		e.wg.Add(1)
		go func() { defer e.wg.Done(); w.run() }()
	}
	return e
}

// add passes one sketch of an app to its worker.
func (e *sketchEstimator) add(app uint32, blob []byte) {
	i := int(app % uint32(len(e.workers)))
	e.batches[i] = append(e.batches[i], sketchRow{app: app, blob: blob})
	if len(e.batches[i]) == estimatorBatch {
		e.workers[i].in <- e.batches[i]
		e.batches[i] = make([]sketchRow, 0, estimatorBatch)
	}
}

// finish waits for the workers and returns each app's estimate: that of
// the union of its sketches, or, when they are of two precisions (written
// before and after an upgrade of the aggregator), the larger of the
// estimates of each precision's union, a lower bound. It must be called
// once, after the last add, even when the caller gives up.
func (e *sketchEstimator) finish() (map[uint32]uint64, error) {
	for i, w := range e.workers {
		if len(e.batches[i]) > 0 {
			w.in <- e.batches[i]
		}
		close(w.in)
	}
	e.wg.Wait()
	out := map[uint32]uint64{}
	for _, w := range e.workers {
		if w.err != nil {
			return nil, w.err
		}
		for app, unions := range w.apps {
			for _, u := range unions {
				n, err := u.estimate()
				if err != nil {
					return nil, fmt.Errorf("read user_sketches: app %d: %w", app, err)
				}
				out[app] = max(out[app], n)
			}
		}
	}
	return out, nil
}

// sketchWorker gathers the sketches of its apps.
type sketchWorker struct {
	in   chan []sketchRow
	apps map[uint32][]*sketchUnion // one per precision
	err  error                     // the first; the rows after it are drained
}

func (w *sketchWorker) run() {
	for rows := range w.in {
		for _, r := range rows {
			if w.err == nil {
				w.err = w.add(r)
			}
		}
	}
}

func (w *sketchWorker) add(r sketchRow) error {
	p, ok := sparsePrecision(r.blob)
	var sk *hyperloglog.Sketch
	if !ok {
		// Dense, or not a form read here: the library decodes it, and
		// says what is wrong with it.
		sk = new(hyperloglog.Sketch)
		if err := sk.UnmarshalBinary(r.blob); err != nil {
			return fmt.Errorf("read user_sketches: app %d: %w", r.app, err)
		}
		p = r.blob[1]
	}
	var u *sketchUnion
	for _, x := range w.apps[r.app] {
		if x.p == p {
			u = x
		}
	}
	if u == nil {
		u = &sketchUnion{p: p}
		w.apps[r.app] = append(w.apps[r.app], u)
	}
	if sk != nil {
		u.others = append(u.others, sk)
		return nil
	}
	keys, ok := appendSparseKeys(u.keys, r.blob)
	if !ok {
		// A sparse form the reader does not take: the library's decoder
		// decides.
		sk = new(hyperloglog.Sketch)
		if err := sk.UnmarshalBinary(r.blob); err != nil {
			return fmt.Errorf("read user_sketches: app %d: %w", r.app, err)
		}
		u.others = append(u.others, sk)
		return nil
	}
	u.keys = keys
	if err := u.compact(); err != nil {
		return fmt.Errorf("read user_sketches: app %d: %w", r.app, err)
	}
	return nil
}

// sketchUnion is one app's sketches of one precision: the keys of the
// sparse ones, and the others decoded by the library.
type sketchUnion struct {
	p      uint8
	keys   []uint32 // sorted and without repeats up to sorted, then as read
	sorted int      // see compact
	others []*hyperloglog.Sketch
}

// compact sorts the keys and drops repeats whenever those read since the
// last compaction outnumber those kept, so that an app's keys take about
// twice the space of its distinct keys (users are active on several days of
// a month) and each key is sorted O(1) times on average. Past a million
// distinct keys the union is dense whatever comes next (each key takes at
// least a byte of the list, and m is at most 2^18): the keys go into a
// sketch of their own, decoded by the library, which bounds an app's keys.
func (u *sketchUnion) compact() error {
	if len(u.keys) < 1024 || len(u.keys)-u.sorted <= u.sorted {
		return nil
	}
	u.sort()
	if len(u.keys) < 1<<20 {
		return nil
	}
	sk := new(hyperloglog.Sketch)
	if err := sk.UnmarshalBinary(sparseBinary(u.p, u.keys)); err != nil {
		return err
	}
	u.others = append(u.others, sk)
	u.keys, u.sorted = u.keys[:0], 0
	return nil
}

func (u *sketchUnion) sort() {
	if u.sorted == len(u.keys) {
		return
	}
	sortKeys(u.keys)
	u.keys = slices.Compact(u.keys)
	u.sorted = len(u.keys)
}

// sortKeys sorts keys: by radix, in three passes of 11 bits, when there
// are enough of them for that to beat comparisons (most of a month's keys
// are those of large apps).
func sortKeys(keys []uint32) {
	if len(keys) < 2048 {
		slices.Sort(keys)
		return
	}
	tmp := make([]uint32, len(keys))
	src, dst := keys, tmp
	for shift := 0; shift < 33; shift += 11 {
		var count [2048]int
		for _, k := range src {
			count[k>>shift&2047]++
		}
		pos := 0
		for i, n := range count {
			count[i] = pos
			pos += n
		}
		for _, k := range src {
			b := k >> shift & 2047
			dst[count[b]] = k
			count[b]++
		}
		src, dst = dst, src
	}
	copy(keys, src)
}

// estimate is the estimate of the union: the library decodes one sparse
// sketch of the union's keys (validating each), merges the dense and other
// sketches into it, and estimates it.
func (u *sketchUnion) estimate() (uint64, error) {
	u.sort()
	sk := new(hyperloglog.Sketch)
	if err := sk.UnmarshalBinary(sparseBinary(u.p, u.keys)); err != nil {
		return 0, err
	}
	for _, o := range u.others {
		if err := sk.Merge(o); err != nil {
			return 0, err
		}
	}
	return sk.Estimate(), nil
}

// The binary form of a sparse sketch (hyperloglog's UnmarshalBinary): a
// header of version (1 or 2), precision p, a byte ignored by sparse forms,
// and 1; a big-endian uint32 count of tmp set keys and the keys; then the
// list: big-endian uint32 count, last key and stream size, and the stream
// of varint deltas between its increasing keys.
const sparseHeader = 8

// sparsePrecision returns the precision of a sketch in sparse binary form
// of version 1 or 2, and false for anything else.
func sparsePrecision(b []byte) (uint8, bool) {
	if len(b) < sparseHeader || (b[0] != 1 && b[0] != 2) || (b[0] == 2 && b[2] != 0) || b[3] != 1 || b[1] < 4 || b[1] > 18 {
		return 0, false
	}
	return b[1], true
}

// appendSparseKeys appends the keys of a sparse sketch in binary form to
// keys. It checks the form's structure as the library's UnmarshalBinary
// does (lengths, at most m tmp set keys, count and last of the list, fewer
// than 2^25 of them, minimal varints, increasing keys) and returns false
// for anything it does not take, which the library then decodes or
// refuses; the keys' values are checked when the union is decoded.
func appendSparseKeys(keys []uint32, b []byte) ([]uint32, bool) {
	n := uint64(binary.BigEndian.Uint32(b[4:8]))
	rest := b[sparseHeader:]
	if uint64(len(rest)) < 4*n+12 || n > 1<<b[1] {
		return keys, false
	}
	start := len(keys)
	for i := range n {
		keys = append(keys, binary.BigEndian.Uint32(rest[4*i:]))
	}
	rest = rest[4*n:]
	count := binary.BigEndian.Uint32(rest[0:4])
	last := binary.BigEndian.Uint32(rest[4:8])
	size := binary.BigEndian.Uint32(rest[8:12])
	stream := rest[12:]
	if uint64(len(stream)) != uint64(size) {
		return keys[:start], false
	}
	var entries, key uint32
	for i := 0; i < len(stream); {
		d, next, ok := uvarint32(stream, i)
		if !ok || (entries > 0 && key+d <= key) {
			return keys[:start], false
		}
		key += d
		keys = append(keys, key)
		entries++
		i = next
	}
	if entries != count || key != last || count >= 1<<25 {
		return keys[:start], false
	}
	return keys, true
}

// uvarint32 reads the minimal varint of at most 5 bytes, fitting 32 bits,
// at b[i:], as the library's list does.
func uvarint32(b []byte, i int) (x uint32, next int, ok bool) {
	for j := 0; j < 5 && i+j < len(b); j++ {
		c := b[i+j]
		x |= uint32(c&0x7f) << (7 * j)
		if c&0x80 == 0 {
			if (j == 4 && c > 0x0f) || (j > 0 && c == 0) {
				return 0, 0, false
			}
			return x, i + j + 1, true
		}
	}
	return 0, 0, false
}

// sparseBinary is the version 2 binary form of the sparse sketch of
// precision p whose list holds keys (sorted, without repeats).
func sparseBinary(p uint8, keys []uint32) []byte {
	out := make([]byte, sparseHeader+12, sparseHeader+12+len(keys)+len(keys)/2)
	out[0], out[1], out[3] = 2, p, 1
	var prev uint32
	for _, k := range keys {
		out = binary.AppendUvarint(out, uint64(k-prev))
		prev = k
	}
	binary.BigEndian.PutUint32(out[8:], uint32(len(keys)))
	binary.BigEndian.PutUint32(out[12:], prev)
	binary.BigEndian.PutUint32(out[16:], uint32(len(out)-sparseHeader-12))
	return out
}

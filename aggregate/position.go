package aggregate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/immeter/immeter/schemas"
)

// Kinds of Stuck, and of the gaps AcceptGap records.
const (
	// GapBeforeLogStart: the stored position is below the partition's first
	// retained offset: events were deleted (retention, kafka-delete-records)
	// before they were aggregated.
	GapBeforeLogStart = "before-log-start"
	// GapTopicRecreated: the topic has another Kafka topic ID than when the
	// position was stored (or, without topic IDs, the position is beyond the
	// log end): it was deleted and created again.
	GapTopicRecreated = "topic-recreated"
	// GapLogTruncated: same topic, but the stored position is beyond the log
	// end: the log lost offsets that were read (an unclean leader election).
	GapLogTruncated = "log-truncated"
	// GapStateLost: ClickHouse has no position although one was stored (the
	// group committed offsets on Kafka, or this process wrote it), and the
	// log no longer starts at 0: what ClickHouse lost cannot be read again.
	GapStateLost = "state-lost"
)

// Stuck is a partition the aggregator does not read until an operator
// decides (immeter accept-gap), because reading it would skip events
// silently. It is also the error open returns for it.
type Stuck struct {
	Partition int
	Kind      string // GapBeforeLogStart, GapTopicRecreated, GapLogTruncated or GapStateLost
	// Position is the stored position as an offset of the topic incarnation
	// it was stored for (-1: none); LogStart and LogEnd are the partition's
	// first offset and end (next offset) on the broker now.
	Position, LogStart, LogEnd int64
	StoredTopicID, TopicID     string // Kafka topic IDs, hex; "" unknown
	Since                      time.Time
}

func (s *Stuck) Error() string {
	var why string
	switch s.Kind {
	case GapBeforeLogStart:
		why = fmt.Sprintf("offsets %d to %d were deleted from Kafka before they were aggregated", s.Position, s.LogStart)
	case GapTopicRecreated:
		why = fmt.Sprintf("the topic was recreated (topic id %s, stored for %s)", s.TopicID, s.StoredTopicID)
	case GapLogTruncated:
		why = fmt.Sprintf("the log ends before the stored position (offsets %d to %d were aggregated, then lost from Kafka)", s.LogEnd, s.Position)
	case GapStateLost:
		why = fmt.Sprintf("ClickHouse lost the stored position, and Kafka no longer has offsets 0 to %d to read again", s.LogStart)
	}
	return fmt.Sprintf("partition %d stuck (%s): %s; stored position %d, log start %d, end %d; run immeter accept-gap --partition %d to record the gap and go on",
		s.Partition, s.Kind, why, s.Position, s.LogStart, s.LogEnd, s.Partition)
}

// logRange is what the broker says of a partition now.
type logRange struct {
	start, end int64  // first offset, next offset
	topicID    string // hex; "" when the broker has none
}

// position is what ClickHouse says of a partition.
type position struct {
	next    int64  // next position to read (Kafka offset + base); -1: none
	base    int64  // the current epoch's offset_base
	topicID string // the current epoch's topic ID; "" unknown
	epoch   uint32 // 0: no epoch row
}

// place decides where a partition is read from (a Kafka offset): its stored
// position, or the log's first offset when there is none. committed is the
// group's offset on Kafka (negative: none); lost says this process saw the
// position go away.
func place(partition int, pos position, lr logRange, committed int64, lost bool) (int64, *Stuck) {
	st := &Stuck{Partition: partition, Position: -1, LogStart: lr.start, LogEnd: lr.end,
		StoredTopicID: pos.topicID, TopicID: lr.topicID}
	if pos.next < 0 {
		if lr.start > 0 && (lost || committed >= 0) {
			st.Kind = GapStateLost
			return 0, st
		}
		return lr.start, nil
	}
	k := pos.next - pos.base
	st.Position = k
	switch {
	case pos.topicID != "" && lr.topicID != "" && pos.topicID != lr.topicID:
		st.Kind = GapTopicRecreated
	case k > lr.end && pos.topicID != "" && pos.topicID == lr.topicID:
		st.Kind = GapLogTruncated
	case k > lr.end:
		st.Kind = GapTopicRecreated
	case k < lr.start:
		st.Kind = GapBeforeLogStart
	default:
		return k, nil
	}
	return 0, st
}

// kafkaAdmin asks the brokers about partitions.
type kafkaAdmin struct{ cl *kgo.Client }

func newKafkaAdmin(brokers []string, sec schemas.KafkaSecurity) (*kafkaAdmin, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(time.Second)}
	tc, err := sec.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(sec.SASLMechanism) {
	case schemas.SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: sec.Username, Pass: sec.Password}.AsSha512Mechanism()))
	case schemas.SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: sec.Username, Pass: sec.Password}.AsMechanism()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &kafkaAdmin{cl: cl}, nil
}

func (k *kafkaAdmin) close() { k.cl.Close() }

// topicID returns a topic's ID, hex; "" when the broker has none.
func (k *kafkaAdmin) topicID(ctx context.Context, topic string) (string, error) {
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	res, err := req.RequestWith(ctx, k.cl)
	if err != nil {
		return "", fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(res.Topics) != 1 {
		return "", fmt.Errorf("metadata of %s: %d topics in the answer", topic, len(res.Topics))
	}
	if err := kerr.ErrorForCode(res.Topics[0].ErrorCode); err != nil {
		return "", fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if id := res.Topics[0].TopicID; id != [16]byte{} {
		return hex.EncodeToString(id[:]), nil
	}
	return "", nil
}

// committed returns the offset group committed for a partition on Kafka;
// negative when it committed none. Errors the broker calls retriable (a
// coordinator loading or moving) are retried for up to 10 s: an answer
// read past them would say "none" for a partition the group did commit.
func (k *kafkaAdmin) committed(ctx context.Context, group, topic string, partition int) (int64, error) {
	for try := 1; ; try++ {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{int32(partition)}
		req.Topics = append(req.Topics, rt)
		res, err := req.RequestWith(ctx, k.cl)
		if err == nil {
			err = kerr.ErrorForCode(res.ErrorCode)
		}
		if err == nil {
			for _, t := range res.Topics {
				for _, p := range t.Partitions {
					if t.Topic != topic || p.Partition != int32(partition) {
						continue
					}
					if err = kerr.ErrorForCode(p.ErrorCode); err == nil {
						return p.Offset, nil
					}
				}
			}
			if err == nil {
				return -1, nil
			}
		}
		if !kerr.IsRetriable(err) || ctx.Err() != nil || try == 50 {
			return 0, fmt.Errorf("offsets of group %s on %s/%d: %w", group, topic, partition, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("offsets of group %s on %s/%d: %w", group, topic, partition, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logRange returns a partition's first and next offsets and its topic's ID.
func (k *kafkaAdmin) logRange(ctx context.Context, topic string, partition int) (logRange, error) {
	var lr logRange
	var err error
	if lr.topicID, err = k.topicID(ctx, topic); err != nil {
		return lr, err
	}
	for i, ts := range []int64{-2, -1} { // earliest, latest
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = int32(partition), ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		res, err := req.RequestWith(ctx, k.cl)
		if err != nil {
			return lr, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
		}
		if len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
			return lr, fmt.Errorf("list offsets of %s/%d: no answer for it", topic, partition)
		}
		p := res.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return lr, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
		}
		if i == 0 {
			lr.start = p.Offset
		} else {
			lr.end = p.Offset
		}
	}
	return lr, nil
}

// position reads a partition's stored position and epoch.
func (st *store) position(ctx context.Context, partition int32) (position, error) {
	pos := position{next: -1}
	var next, rows uint64
	if err := st.conn.QueryRow(ctx, sqlReadPosition, st.group, st.topic, partition).Scan(&next, &rows); err != nil {
		return pos, fmt.Errorf("read consumer_offsets: %w", err)
	}
	if rows > 0 {
		pos.next = int64(next)
	}
	if err := st.conn.QueryRow(ctx, sqlReadEpoch, st.group, st.topic, partition).Scan(&pos.epoch, &pos.base, &pos.topicID, &rows); err != nil {
		return pos, fmt.Errorf("read partition_epochs: %w", err)
	}
	if rows == 0 {
		pos.epoch, pos.base, pos.topicID = 0, 0, ""
	}
	return pos, nil
}

// writeEpoch records a new epoch of a partition.
func writeEpoch(ctx context.Context, conn driver.Conn, group, topic string, partition int32, pos position, first uint64, now time.Time) error {
	if err := schemas.InsertRow(ctx, conn, sqlInsertEpoch, group, topic, partition, pos.epoch, pos.topicID, pos.base,
		first, now.UTC().Truncate(time.Second)); err != nil {
		return fmt.Errorf("write partition_epochs: %w", err)
	}
	return nil
}

// GapConfig says which partition AcceptGap acts on, and why.
type GapConfig struct {
	Brokers   []string              // KAFKA_BROKERS
	Security  schemas.KafkaSecurity // SASL and TLS towards the brokers
	Topic     string                // default im.usage.events
	Group     string                // the aggregators' group; default immeter-aggregate
	Partition int
	Reason    string // required: why skipping is right (a ticket, an incident)
	By        string // required: who decides
	Now       func() time.Time
}

// Gap is an accepted gap, as recorded in offset_gaps.
type Gap struct {
	Partition              int
	Kind                   string
	OldTopicID, NewTopicID string
	From, To               int64 // see offset_gaps in schemas/migrations/0005_offset_gaps.sql
	PositionBefore         int64 // -1: none
	PositionAfter          uint64
	AcceptedAt             time.Time
	AcceptedBy, Reason     string
}

// ErrNotStuck is returned by AcceptGap for a partition that can be read
// from its stored position.
var ErrNotStuck = errors.New("partition is not stuck: nothing to accept")

// AcceptGap records the offset range a stuck partition cannot read in
// offset_gaps, then moves its stored position past it (and, for a recreated
// or truncated log, starts a new epoch), so that the aggregator reading the
// partition goes on at its next check (Config.StuckRecheck).
func AcceptGap(ctx context.Context, conn driver.Conn, cfg GapConfig) (Gap, error) {
	d := DefaultConfig()
	if cfg.Topic == "" {
		cfg.Topic = d.Topic
	}
	if cfg.Group == "" {
		cfg.Group = d.Group
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case len(cfg.Brokers) == 0:
		return Gap{}, errors.New("KAFKA_BROKERS: required")
	case cfg.Reason == "":
		return Gap{}, errors.New("--reason: required (why the events may be skipped)")
	case cfg.By == "":
		return Gap{}, errors.New("--by: required (who decides)")
	case cfg.Partition < 0:
		return Gap{}, errors.New("--partition: required")
	}
	admin, err := newKafkaAdmin(cfg.Brokers, cfg.Security)
	if err != nil {
		return Gap{}, err
	}
	defer admin.close()
	lr, err := admin.logRange(ctx, cfg.Topic, cfg.Partition)
	if err != nil {
		return Gap{}, err
	}
	committed, err := admin.committed(ctx, cfg.Group, cfg.Topic, cfg.Partition)
	if err != nil {
		return Gap{}, err
	}
	st := &store{conn: conn, group: cfg.Group, topic: cfg.Topic}
	p := int32(cfg.Partition)
	pos, err := st.position(ctx, p)
	if err != nil {
		return Gap{}, err
	}
	_, stuck := place(cfg.Partition, pos, lr, committed, false)
	if stuck == nil {
		return Gap{}, fmt.Errorf("%w: stored position %d (base %d) within the log [%d, %d)", ErrNotStuck, pos.next, pos.base, lr.start, lr.end)
	}
	now := cfg.Now().UTC().Truncate(time.Second)
	g := Gap{Partition: cfg.Partition, Kind: stuck.Kind, OldTopicID: pos.topicID, NewTopicID: lr.topicID,
		From: stuck.Position, To: lr.start, PositionBefore: pos.next, AcceptedAt: now, AcceptedBy: cfg.By, Reason: cfg.Reason}
	epoch := pos
	epoch.epoch++
	epoch.topicID = lr.topicID
	switch stuck.Kind {
	case GapBeforeLogStart:
		g.PositionAfter = uint64(lr.start + pos.base)
	case GapStateLost:
		g.From = 0
		g.PositionAfter = uint64(lr.start + pos.base)
	case GapTopicRecreated:
		// Positions go on from the stored one: the new topic's offsets
		// map onto positions above every one stored before.
		epoch.base = pos.next - lr.start
		g.PositionAfter = uint64(pos.next)
	case GapLogTruncated:
		epoch.base = pos.next - lr.end
		g.To = lr.end
		g.PositionAfter = uint64(pos.next)
	}
	if err := schemas.InsertRow(ctx, conn, sqlInsertGap, cfg.Group, cfg.Topic, p, g.Kind, g.OldTopicID, g.NewTopicID,
		g.From, g.To, g.PositionBefore, g.PositionAfter, now, g.AcceptedBy, g.Reason); err != nil {
		return Gap{}, fmt.Errorf("write offset_gaps: %w", err)
	}
	if epoch.base != pos.base || epoch.topicID != pos.topicID {
		if err := writeEpoch(ctx, conn, cfg.Group, cfg.Topic, p, epoch, g.PositionAfter, now); err != nil {
			return Gap{}, err
		}
	}
	if uint64(max(pos.next, 0)) != g.PositionAfter || pos.next < 0 {
		if err := schemas.InsertRow(ctx, conn, sqlInsertPosition, cfg.Group, cfg.Topic, p, g.PositionAfter, now); err != nil {
			return Gap{}, fmt.Errorf("write consumer_offsets: %w", err)
		}
	}
	return g, nil
}

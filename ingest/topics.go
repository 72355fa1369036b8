package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/schemas"
)

// ensureTopicsTimeout bounds EnsureTopics when ctx has no deadline.
const ensureTopicsTimeout = 60 * time.Second

// EnsureTopics creates the topics that do not exist yet with the given number
// of partitions and replication factor (from 3 replicas on with
// min.insync.replicas = replication - 1, so that a write acknowledged by all
// in-sync replicas is on two brokers at least while one may be down), and
// waits until the metadata of every topic shows all its partitions with a
// leader. Existing topics are left as they are. Without a deadline on ctx it
// gives up after 60 s.
func EnsureTopics(ctx context.Context, brokers []string, partitions, replication int, topics ...string) error {
	return EnsureTopicsWith(ctx, schemas.KafkaSecurity{}, brokers, partitions, replication, topics...)
}

// EnsureTopicsWith is EnsureTopics with SASL and TLS towards the brokers.
func EnsureTopicsWith(ctx context.Context, sec schemas.KafkaSecurity, brokers []string, partitions, replication int, topics ...string) error {
	switch {
	case len(brokers) == 0:
		return errors.New("ingest: EnsureTopics: no brokers")
	case partitions < 1:
		return fmt.Errorf("ingest: EnsureTopics: partitions must be >= 1; got %d", partitions)
	case replication < 1:
		return fmt.Errorf("ingest: EnsureTopics: replication must be >= 1; got %d", replication)
	case len(topics) == 0:
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ensureTopicsTimeout)
		defer cancel()
	}
	// A transport of its own with a short metadata TTL: the shared default one
	// caches metadata for seconds and would report the new partitions late.
	tr, err := sec.Transport("immeter-ensure-topics")
	if err != nil {
		return err
	}
	tr.MetadataTTL = 200 * time.Millisecond
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}

	req := &kafka.CreateTopicsRequest{}
	var configs []kafka.ConfigEntry
	if replication >= 3 {
		configs = append(configs, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(replication - 1)})
	}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: replication,
			ConfigEntries: configs})
	}
	// A broker that is starting, or whose controller is busy, answers
	// with a temporary error: asked again until ctx ends.
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		err = createTopics(ctx, c, req, brokers)
		if err == nil || !createRetriable(err) {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
	if err != nil {
		return err
	}

	delay := 20 * time.Millisecond
	for {
		why := topicsNotReady(ctx, c, topics)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ingest: topics %v not ready (%s): %w", topics, why, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// createTopics sends req once and reports the first error other than a
// topic that exists already.
func createTopics(ctx context.Context, c *kafka.Client, req *kafka.CreateTopicsRequest, brokers []string) error {
	res, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("ingest: create topics on %v: %w", brokers, err)
	}
	for _, t := range req.Topics {
		if err := res.Errors[t.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("ingest: create topic %s: %w", t.Topic, err)
		}
	}
	return nil
}

// createRetriable says whether asking again may succeed: a broker's answer
// that Kafka calls temporary, or broker not available (KRaft answers so
// while its controller is out of reach). Errors of the connection, TLS or
// SASL fail at once, as before.
func createRetriable(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && (ke.Temporary() || ke == kafka.BrokerNotAvailable)
}

// topicsNotReady says why the topics are not all ready for producing, or ""
// when every partition of every topic has a leader that answers for it (a
// new partition can show a leader in metadata a moment before the leader
// serves it, answering NOT_LEADER_OR_FOLLOWER).
func topicsNotReady(ctx context.Context, c *kafka.Client, topics []string) string {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return err.Error()
	}
	found := make(map[string]kafka.Topic, len(md.Topics))
	for _, t := range md.Topics {
		found[t.Name] = t
	}
	offsets := map[string][]kafka.OffsetRequest{}
	for _, name := range topics {
		t, ok := found[name]
		switch {
		case !ok:
			return name + ": not in metadata"
		case t.Error != nil:
			return name + ": " + t.Error.Error()
		case len(t.Partitions) == 0:
			return name + ": no partitions"
		}
		for _, p := range t.Partitions {
			if p.Error != nil {
				return fmt.Sprintf("%s/%d: %v", name, p.ID, p.Error)
			}
			if p.Leader.Host == "" {
				return fmt.Sprintf("%s/%d: no leader", name, p.ID)
			}
			offsets[name] = append(offsets[name], kafka.LastOffsetOf(p.ID))
		}
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: offsets})
	if err != nil {
		return err.Error()
	}
	for name, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Sprintf("%s/%d: %v", name, p.Partition, p.Error)
			}
		}
	}
	return ""
}

// EndOffsets returns the next offset of every partition of topic: with
// aggregate.Progress, the consumers' lag.
func EndOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	// A transport of its own: the shared one's metadata may predate topic.
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{ClientID: "immeter-offsets"}}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("metadata of %s: %+v", topic, md.Topics)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range md.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
	}
	return out, nil
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestCreateRetriable: EnsureTopics asks again when the broker answers that
// it is not available (KRaft, controller out of reach: TestFaultKill9's
// aggregator once died of it at start) or with another temporary error,
// and fails at once on anything else.
func TestCreateRetriable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("ingest: create topics on [b]: kafka.(*Client).CreateTopics: %w", kafka.BrokerNotAvailable), true},
		{fmt.Errorf("ingest: create topic t: %w", kafka.NotController), true},
		{fmt.Errorf("ingest: create topic t: %w", kafka.RequestTimedOut), true},
		{fmt.Errorf("ingest: create topic t: %w", kafka.InvalidReplicationFactor), false},
		{fmt.Errorf("ingest: create topic t: %w", kafka.TopicAuthorizationFailed), false},
		{fmt.Errorf("ingest: create topics: %w", errors.New("dial tcp: connection refused")), false},
		{context.Canceled, false},
	} {
		if got := createRetriable(c.err); got != c.want {
			t.Errorf("createRetriable(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}

package ingest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
)

// TestPartitionerMatchesOtherClients publishes one event per app through
// immeter's producer, kcat with the setting the README documents
// (partitioner=murmur2_random), franz-go with its defaults and, when the
// Kafka jars of .ci/kafka.sh are cached, the Java console producer with its
// defaults, and checks that every copy of an app's event is in one
// partition: deduplication needs that. kcat with its own default (CRC32)
// must put some app elsewhere, or the test would prove nothing.
func TestPartitionerMatchesOtherClients(t *testing.T) {
	k := realKafka(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (.ci/kafka.sh start installs it)")
	}
	const partitions, apps = 12, 40
	topic := "immeter-test-partitioner-" + NewID()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, k.brokers, partitions, 1, topic); err != nil {
		t.Fatal(err)
	}
	testenv.DeleteTopicsAtEnd(t, k.brokers, topic)

	at := time.Date(2026, 11, 25, 21, 0, 0, 0, time.FixedZone("", 8*3600))
	event := func(app uint32, via string) schemas.Event {
		e := NewLogin(app, "u-1", at)
		e.ID = via + "-" + strconv.FormatUint(uint64(app), 10)
		return e
	}
	lines := func(via string) string {
		var b strings.Builder
		for app := uint32(1400000001); app < 1400000001+apps; app++ {
			v, err := event(app, via).MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%d\t%s\n", app, v)
		}
		return b.String()
	}
	run := func(name string, stdin string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", name, err, out)
		}
	}

	p := k.producer(t, topic, nil)
	for app := uint32(1400000001); app < 1400000001+apps; app++ {
		if errs, err := p.PublishSync(ctx, event(app, "immeter")); err != nil || errs[0] != nil {
			t.Fatalf("immeter producer: %v %v", err, errs)
		}
	}
	brokers := strings.Join(k.brokers, ",")
	run("kcat", lines("kcat"), kcat, "-P", "-b", brokers, "-t", topic, "-K", "\t", "-X", "topic.partitioner=murmur2_random", "-X", "acks=all")
	run("kcat default", lines("kcatdefault"), kcat, "-P", "-b", brokers, "-t", topic, "-K", "\t", "-X", "acks=all")

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	for app := uint32(1400000001); app < 1400000001+apps; app++ {
		v, _ := event(app, "franz").MarshalJSON()
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.FormatUint(uint64(app), 10)), Value: v}).FirstErr(); err != nil {
			t.Fatalf("franz-go: %v", err)
		}
	}
	cl.Close()

	sources := []string{"immeter", "kcat", "franz"}
	if libs := kafkaLibs(); libs != "" {
		run("java console producer", lines("java"), "java", "-Xmx256m", "-cp", filepath.Join(libs, "*"),
			"org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", brokers, "--topic", topic,
			"--property", "parse.key=true", "--property", "key.separator=\t")
		sources = append(sources, "java")
	} else {
		t.Log("Kafka jars not cached (.ci/kafka.sh start fetches them): the Java client is not part of this run")
	}

	// where[via][app] is the partition of that copy of the app's event.
	where := map[string]map[string]int32{}
	for _, r := range k.read(t, topic) {
		e, err := schemas.DecodeEvent(r.Value)
		if err != nil {
			t.Fatalf("record %s: %v", r.Value, err)
		}
		via, app, _ := strings.Cut(e.ID, "-")
		if where[via] == nil {
			where[via] = map[string]int32{}
		}
		where[via][app] = r.Partition
	}
	used := map[int32]bool{}
	for app, want := range where["immeter"] {
		used[want] = true
		for _, via := range sources {
			if got, ok := where[via][app]; !ok || got != want {
				t.Errorf("app %s: %s wrote partition %d (found: %v); immeter's producer wrote %d", app, via, got, ok, want)
			}
		}
	}
	if len(where["immeter"]) != apps || len(used) < partitions/2 {
		t.Fatalf("unexpected spread: %d apps over %d partitions", len(where["immeter"]), len(used))
	}
	differ := 0
	for app, want := range where["immeter"] {
		if where["kcatdefault"][app] != want {
			differ++
		}
	}
	if differ == 0 {
		t.Fatalf("kcat's default partitioner agreed on all %d apps: the test cannot tell partitioners apart", apps)
	}
	t.Logf("%d apps over %d partitions agree across %v; kcat's default (CRC32) differs on %d", apps, len(used), sources, differ)
}

// kafkaLibs returns the directory of the Kafka jars .ci/kafka.sh caches, or
// "" when there is none.
func kafkaLibs() string {
	dir := os.Getenv("KAFKA_CACHE_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(cache, "immeter", "kafka-4.1.1")
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return ""
	}
	if _, err := exec.LookPath("java"); err != nil {
		return ""
	}
	return filepath.Join(dir, "libs")
}

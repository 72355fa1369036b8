package ingest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGateway is the gateway's throughput over loopback HTTP: requests
// of 100 signed events from 16 concurrent clients, each answered after
// Kafka acknowledged them. One op is one request.
func BenchmarkGateway(b *testing.B) {
	const perRequest = 100
	k := benchKafka(b)
	topic := k.topic(b)
	cfg := DefaultProducerConfig()
	cfg.Brokers, cfg.Topic = k.brokers, topic
	p, err := NewProducer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	g := newTestGateway(b, p, func(c *GatewayConfig) {
		c.Now = time.Now
		c.MaxBodyBytes = 4 << 20
	})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()

	// A few different bodies, each request's made unique by its first
	// event (the gateway refuses a signed request it accepted already) and
	// signed anew; the clock window is 5 minutes.
	var bodies [][]byte
	for r := range 8 {
		var buf bytes.Buffer
		for i := 1; i < perRequest; i++ {
			buf.WriteString(`{"id":"bench-` + strconv.Itoa(r) + `-` + strconv.Itoa(i) + `","type":"message","app":1400000001,"time":"2026-11-25T21:00:00+08:00","user":"u` + strconv.Itoa(i) + `","channel":"group","count":1}` + "\n")
		}
		bodies = append(bodies, buf.Bytes())
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 8 × GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var body []byte
		for pb.Next() {
			k := n.Add(1)
			body = append(body[:0], `{"id":"bench-req-`...)
			body = strconv.AppendInt(body, k, 10)
			body = append(body, `","type":"message","app":1400000001,"time":"2026-11-25T21:00:00+08:00","user":"u0","channel":"group","count":1}`+"\n"...)
			body = append(body, bodies[k%int64(len(bodies))]...)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-ndjson")
			req.Header.Set(HeaderApp, "1400000001")
			req.Header.Set(HeaderTimestamp, ts)
			req.Header.Set(HeaderSignature, Sign(testSecrets[testApp], ts, body))
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted || !strings.Contains(string(got), `"accepted":100`) {
				b.Errorf("unexpected answer %d %s", res.StatusCode, got)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*perRequest)/b.Elapsed().Seconds(), "events/s")
}

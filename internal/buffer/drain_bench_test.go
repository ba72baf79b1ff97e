package buffer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// drainBatches is the backlog each drain benchmark works through: one
// write per batch, as the group commit stores them while nothing holds it
// up (a backlog built during an outage is made of such batches).
const drainBatches = 10000

// BenchmarkDrainSmallBatches measures how fast the committer works through
// a backlog of one-write batches (through the standby-region
// acknowledgement path, with no standby region), against the same number
// of messages fetched and acknowledged from a plain JetStream consumer in
// the same run (the ceiling JetStream itself sets). Both report batches/s.
func BenchmarkDrainSmallBatches(b *testing.B) {
	f := startCommitterFixture(b)
	ctx := context.Background()
	b.Run("jetstream-fetch-ack", func(b *testing.B) {
		for i := range b.N {
			b.StopTimer()
			stream := fmt.Sprintf("REF_%d", i)
			js, err := jetstream.New(f.nats.nc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"ref." + stream},
				Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy}); err != nil {
				b.Fatal(err)
			}
			payload := appendBatch(nil, []Write{{Kind: "test-ingest", Key: "k", Payload: []byte(`{"guid":"x"}`), AcceptedAt: time.Now()}})
			for range drainBatches {
				if _, err := js.Publish(ctx, "ref."+stream, payload); err != nil {
					b.Fatal(err)
				}
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			for n := 0; n < drainBatches; {
				batch, err := cons.Fetch(maxGroupBatches, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				sem := make(chan struct{}, ackParallel)
				for m := range batch.Messages() {
					n++
					sem <- struct{}{}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						if _, err := decodeBatch(m.Data()); err != nil {
							b.Error(err)
						}
						if err := m.DoubleAck(ctx); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(drainBatches/time.Since(start).Seconds(), "batches/s")
		}
	})
	b.Run("committer", func(b *testing.B) {
		f.cfg.Replication = func(context.Context) (Replication, error) {
			return Replication{PrimaryTimeline: 1, Standbys: map[string]Position{}}, nil
		}
		for i := range b.N {
			b.StopTimer()
			f.appendIngest(b, fmt.Sprintf("d%d", i), drainBatches)
			b.StartTimer()
			start := time.Now()
			c, stop := f.runCommitter(b, nil)
			for c.Committed.Load() < drainBatches {
				time.Sleep(5 * time.Millisecond)
			}
			b.ReportMetric(drainBatches/time.Since(start).Seconds(), "batches/s")
			stop()
		}
	})
}

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
// up (a backlog built during an outage is made of such small batches).
const drainBatches = 10000

// BenchmarkDrainSmallBatches measures how fast the committer works through
// a backlog of one-write batches of the ingest kind (through the
// standby-region acknowledgement path, with no standby region), against
// plain JetStream consumers in the same run: one that acknowledges every
// message (each a removal from the work queue, fsynced), and one that
// purges the stream up to what it fetched (one removal per fetch), the
// ceiling of the committer's bulk acknowledgement. All report batches/s.
func BenchmarkDrainSmallBatches(b *testing.B) {
	f := startCommitterFixture(b)
	ctx := context.Background()
	payload := appendBatch(nil, []Write{{Kind: KindIngest, Key: "k", Payload: []byte(`{"guid":"x"}`), AcceptedAt: time.Now()}})
	plain := func(b *testing.B, name string, drain func(cons jetstream.Consumer, s jetstream.Stream) error) {
		for i := range b.N {
			b.StopTimer()
			stream := fmt.Sprintf("REF_%s_%d", name, i)
			js, err := jetstream.New(f.nats.nc)
			if err != nil {
				b.Fatal(err)
			}
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"ref." + stream},
				Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy})
			if err != nil {
				b.Fatal(err)
			}
			for range drainBatches {
				if _, err := js.Publish(ctx, "ref."+stream, payload); err != nil {
					b.Fatal(err)
				}
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxDelayedBatches})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := drain(cons, s); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(drainBatches/time.Since(start).Seconds(), "batches/s")
		}
	}
	b.Run("jetstream-ack-each", func(b *testing.B) {
		plain(b, "ack", func(cons jetstream.Consumer, _ jetstream.Stream) error {
			for n := 0; n < drainBatches; {
				batch, err := cons.Fetch(maxGroupBatches, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					return err
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
			return nil
		})
	})
	b.Run("jetstream-purge", func(b *testing.B) {
		plain(b, "purge", func(cons jetstream.Consumer, s jetstream.Stream) error {
			for n := 0; n < drainBatches; {
				batch, err := cons.Fetch(maxGroupBatches, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					return err
				}
				var last uint64
				for m := range batch.Messages() {
					n++
					if _, err := decodeBatch(m.Data()); err != nil {
						return err
					}
					last = msgSeq(m)
				}
				if _, err := cons.Info(ctx); err != nil {
					return err
				}
				if err := s.Purge(ctx, jetstream.WithPurgeSequence(last+1)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	b.Run("committer", func(b *testing.B) {
		f.cfg.Replication = func(context.Context) (Replication, error) {
			return Replication{PrimaryTimeline: 1, Standbys: map[string]Position{}}, nil
		}
		for i := range b.N {
			b.StopTimer()
			for j := range drainBatches {
				w := Write{Kind: KindIngest, Key: fmt.Sprintf("d%d-%d", i, j), Payload: fmt.Appendf(nil, `{"guid":"%s"}`, guid(fmt.Sprint("d", i), j)), AcceptedAt: time.Now()}
				if err := f.log.Append(ctx, w); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			start := time.Now()
			c, stop := f.runCommitter(b, nil)
			for c.Committed.Load() < drainBatches {
				time.Sleep(5 * time.Millisecond)
			}
			b.ReportMetric(drainBatches/time.Since(start).Seconds(), "batches/s")
			b.ReportMetric(float64(c.AckedByPurge.Load())/drainBatches, "purged/batch")
			stop()
		}
	})
}

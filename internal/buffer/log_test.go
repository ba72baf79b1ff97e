package buffer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/testutil"
)

type natsFixture struct {
	addr, dir string
	srv       *Embedded
	nc        *nats.Conn
}

func startNATS(t testing.TB) *natsFixture {
	t.Helper()
	f := &natsFixture{addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), dir: t.TempDir()}
	f.restart(t)
	nc, err := nats.Connect(f.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	f.nc = nc
	t.Cleanup(func() {
		nc.Close()
		if f.srv != nil {
			f.srv.Close()
		}
	})
	return f
}

func (f *natsFixture) restart(t testing.TB) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedConfig{Addr: f.addr, StoreDir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
}

// storedKeys reads every batch in the stream and counts each key.
func storedKeys(t *testing.T, nc *nats.Conn, stream string) (map[string]int, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	first, last := info.State.FirstSeq, info.State.LastSeq
	batches := 0
	for seq := first; seq <= last && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		ws, err := decodeBatch(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		batches++
		for _, w := range ws {
			keys[w.Key]++
		}
	}
	return keys, batches
}

// TestLogGroupCommit: concurrent writers are acknowledged once stored,
// share batches, and every acknowledged key is stored exactly once.
func TestLogGroupCommit(t *testing.T) {
	f := startNATS(t)
	ctx := context.Background()
	cfg := DefaultLogConfig()
	l, err := OpenLog(ctx, f.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const writers, each = 64, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w := Write{Kind: "ingest", Key: fmt.Sprintf("w%d-%d", g, i), Payload: []byte(`{"n":1}`), AcceptedAt: time.Now()}
				if err := l.Append(ctx, w); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	keys, batches := storedKeys(t, f.nc, cfg.Stream)
	if len(keys) != writers*each {
		t.Fatalf("%d keys stored, want %d", len(keys), writers*each)
	}
	for k, n := range keys {
		if n != 1 {
			t.Fatalf("key %s stored %d times", k, n)
		}
	}
	if batches >= writers*each {
		t.Fatalf("%d batches for %d writes: no group commit", batches, writers*each)
	}
	t.Logf("%d writes in %d batches", writers*each, batches)
}

// TestLogSurvivesNATSRestart: writes acknowledged before a restart of the
// NATS server are still there after it, and writes made while it is down
// are acknowledged once it is back, stored once.
// TestLogLingersWhileBehind: while the committer's backlog is long, a small
// batch waits for more writes (fewer, bigger batches for the committer to
// acknowledge one by one); otherwise it is stored at once.
func TestLogLingersWhileBehind(t *testing.T) {
	ctx := context.Background()
	l, err := OpenLog(ctx, startNATS(t).nc, DefaultLogConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	var backlog atomic.Int64
	l.SetBacklog(func() int { return int(backlog.Load()) })
	write := func(key string) {
		if err := l.Append(ctx, Write{Kind: "ingest", Key: key, Payload: []byte(`{"n":1}`), AcceptedAt: time.Now()}); err != nil {
			t.Error(err)
		}
	}
	// One writer, one write at a time: each batch holds one write, and
	// waits lingerGap for another only while behind.
	const sequential = 10
	start := time.Now()
	backlog.Store(lingerBacklog)
	for i := range sequential {
		write(fmt.Sprintf("s%d", i))
	}
	if took := time.Since(start); took < sequential*lingerGap {
		t.Fatalf("%d writes while behind took %v: a batch below %d writes did not wait %v for more", sequential, took, lingerWrites, lingerGap)
	}
	// Eight writers, behind: each batch waits for all eight.
	backlog.Store(lingerBacklog + 1)
	b0, w0 := l.Batches.Load(), l.Writes.Load()
	const writers, each = 8, 20
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				write(fmt.Sprintf("c%d-%d", g, i))
			}
		}()
	}
	wg.Wait()
	batches, writes := l.Batches.Load()-b0, l.Writes.Load()-w0
	if writes != writers*each {
		t.Fatalf("%d writes stored, want %d", writes, writers*each)
	}
	if per := float64(writes) / float64(batches); per < writers/2 {
		t.Fatalf("%.1f writes per batch while behind with %d writers (%d batches): the batches did not wait for the others", per, writers, batches)
	}
	// Not behind: nothing waits (a lone write is stored at once).
	backlog.Store(lingerBacklog - 1)
	b0 = l.Batches.Load()
	for i := range sequential {
		write(fmt.Sprintf("n%d", i))
	}
	if got := l.Batches.Load() - b0; got != sequential {
		t.Fatalf("%d batches for %d sequential writes", got, sequential)
	}
}

func TestLogSurvivesNATSRestart(t *testing.T) {
	f := startNATS(t)
	ctx := context.Background()
	cfg := DefaultLogConfig()
	cfg.PublishTimeout = 30 * time.Second
	l, err := OpenLog(ctx, f.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 100 {
		if err := l.Append(ctx, Write{Kind: "ingest", Key: fmt.Sprintf("before-%d", i), Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	f.srv.Close()
	f.srv = nil
	during := make(chan error, 1)
	go func() {
		for i := range 20 {
			if err := l.Append(ctx, Write{Kind: "ingest", Key: fmt.Sprintf("during-%d", i), Payload: []byte(`{}`)}); err != nil {
				during <- err
				return
			}
		}
		during <- nil
	}()
	f.restart(t)
	if err := <-during; err != nil {
		t.Fatalf("a write made while NATS restarted: %v", err)
	}
	keys, _ := storedKeys(t, f.nc, cfg.Stream)
	for i := range 100 {
		if n := keys[fmt.Sprintf("before-%d", i)]; n != 1 {
			t.Fatalf("before-%d stored %d times after the restart", i, n)
		}
	}
	for i := range 20 {
		if n := keys[fmt.Sprintf("during-%d", i)]; n != 1 {
			t.Fatalf("during-%d stored %d times", i, n)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(appendBatch(nil, []Write{{Kind: "ingest", Key: "k", Payload: []byte(`{"a":1}`), AcceptedAt: time.Unix(1, 2)}}))
	f.Add([]byte{'H', 1, 0})
	f.Add([]byte{'H', 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, err := decodeBatch(b)
		if err != nil {
			return
		}
		// What decodes re-encodes (canonically) to the same writes.
		again, err := decodeBatch(appendBatch(nil, ws))
		if err != nil || len(again) != len(ws) {
			t.Fatalf("re-encoding %d writes: %v (%d back)", len(ws), err, len(again))
		}
		for i := range ws {
			if again[i].Kind != ws[i].Kind || again[i].Key != ws[i].Key || string(again[i].Payload) != string(ws[i].Payload) || !again[i].AcceptedAt.Equal(ws[i].AcceptedAt) ||
				again[i].Attempts != ws[i].Attempts || again[i].LastError != ws[i].LastError {
				t.Fatalf("write %d changed in a round trip: %+v -> %+v", i, ws[i], again[i])
			}
		}
	})
}

func TestBatchRoundTrip(t *testing.T) {
	in := []Write{
		{Kind: "ingest", Key: "a", Payload: []byte(`{"guid":"x"}`), AcceptedAt: time.Unix(100, 5).UTC()},
		{Kind: "todo", Key: "", Payload: nil, AcceptedAt: time.Unix(0, 0).UTC(), Attempts: 3, LastError: "23505: duplicate key"},
	}
	out, err := decodeBatch(appendBatch(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Key != "a" || string(out[0].Payload) != `{"guid":"x"}` || !out[0].AcceptedAt.Equal(in[0].AcceptedAt) || out[1].Kind != "todo" || out[1].Attempts != 3 || out[1].LastError != "23505: duplicate key" {
		t.Fatalf("round trip: %+v", out)
	}
	for _, bad := range [][]byte{nil, {'X', 1}, {'H', 2, 0}, {'H', 1, 1}, append(appendBatch(nil, in), 0)} {
		if _, err := decodeBatch(bad); err == nil {
			t.Errorf("decodeBatch(%x) accepted", bad)
		}
	}
}

// BenchmarkDurableWrites compares, in one run, 64 concurrent writers
// appending through Log (group commit) with the same writers publishing
// one fsynced JetStream message per write (the baseline). Both report
// acknowledged writes per second.
func BenchmarkDurableWrites(b *testing.B) {
	f := &natsFixture{addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b)), dir: b.TempDir()}
	srv, err := StartEmbedded(EmbeddedConfig{Addr: f.addr, StoreDir: f.dir})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	payload := []byte(`{"guid":"6f1c2a4e-8d0b-4c1e-9a53-2b7d4f9e0a11","requested_at":"2026-11-23T12:00:00Z"}`)
	run := func(b *testing.B, write func(i uint64) error) {
		var n atomic.Uint64
		b.SetParallelism(32) // x GOMAXPROCS (2): 64 writers
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := write(n.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	}
	b.Run("group-commit", func(b *testing.B) {
		cfg := DefaultLogConfig()
		cfg.Stream, cfg.Subject = "BENCH_GROUP", "bench.group"
		l, err := OpenLog(ctx, nc, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		run(b, func(i uint64) error {
			return l.Append(ctx, Write{Kind: "ingest", Key: strconv.FormatUint(i, 10), Payload: payload, AcceptedAt: time.Now()})
		})
	})
	b.Run("http-ingest", func(b *testing.B) {
		cfg := DefaultLogConfig()
		cfg.Stream, cfg.Subject = "BENCH_HTTP", "bench.http"
		l, err := OpenLog(ctx, nc, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		mux := http.NewServeMux()
		icfg := DefaultIngestConfig()
		icfg.Handlers = IngestHandlers()
		NewIngest(l, icfg).Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
		var mu sync.Mutex
		var lat []time.Duration
		run(b, func(i uint64) error {
			body := fmt.Sprintf(`{"kind":"ingest","key":"h%d","payload":{"guid":"%s"}}`, i, guid("bench", int(i)))
			start := time.Now()
			resp, err := client.Post(srv.URL+"/v1/writes", "application/json", strings.NewReader(body))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			return nil
		})
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
	})
	b.Run("publish-per-write", func(b *testing.B) {
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_PLAIN", Subjects: []string{"bench.plain"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
		run(b, func(i uint64) error {
			_, err := js.Publish(ctx, "bench.plain", payload)
			return err
		})
	})
}

package buffer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/testutil"
)

type committerFixture struct {
	nats *natsFixture
	pg   *testutil.Postgres
	conn *pgx.Conn
	log  *Log
	cfg  CommitterConfig
}

func startCommitterFixture(t testing.TB) *committerFixture {
	t.Helper()
	f := &committerFixture{nats: startNATS(t)}
	var ctx context.Context
	f.pg, f.conn, ctx = startDatabase(t, testIngestDDL)
	var err error
	f.cfg = DefaultCommitterConfig(f.pg.DSN)
	f.cfg.Handlers = testHandlers
	f.cfg.MaxAttempts = 3
	f.cfg.AckWait = 2 * time.Second
	f.cfg.Log.PublishTimeout = 30 * time.Second
	if f.log, err = OpenLog(ctx, f.nats.nc, f.cfg.Log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.log.Close)
	return f
}

// runCommitter runs a committer until the test ends or stop is called.
func (f *committerFixture) runCommitter(t testing.TB, hook func() bool) (*Committer, func()) {
	t.Helper()
	c, err := NewCommitter(context.Background(), f.nats.nc, f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.afterCommit = hook
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return c, stop
}

func (f *committerFixture) appendIngest(t testing.TB, prefix string, n int) {
	t.Helper()
	for i := range n {
		w := Write{Kind: "test-ingest", Key: fmt.Sprintf("%s-%d", prefix, i),
			Payload: fmt.Appendf(nil, `{"guid":"%s"}`, guid(prefix, i)), AcceptedAt: time.Now()}
		if err := f.log.Append(context.Background(), w); err != nil {
			t.Fatal(err)
		}
	}
}

func guid(prefix string, i int) string {
	h := uint32(0)
	for _, c := range prefix {
		h = h*31 + uint32(c)
	}
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", h, i)
}

func (f *committerFixture) waitRows(t *testing.T, want int) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%d rows", want), func() error {
		var n int
		if err := f.conn.QueryRow(context.Background(), "SELECT count(*) FROM test_ingest").Scan(&n); err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%d rows", n)
		}
		return nil
	})
}

// TestCommitterAppliesOncePoisonDeadLetters: every write applies once; a
// poison write goes to the dead-letter stream after MaxAttempts with its
// error, without holding up the others.
func TestCommitterAppliesOncePoisonDeadLetters(t *testing.T) {
	f := startCommitterFixture(t)
	c, _ := f.runCommitter(t, nil)
	f.appendIngest(t, "a", 300)
	if err := f.log.Append(context.Background(), Write{Kind: "test-ingest", Key: "poison", Payload: []byte(`{"guid":"not-a-uuid"}`)}); err != nil {
		t.Fatal(err)
	}
	f.appendIngest(t, "b", 200)
	f.waitRows(t, 500)
	testutil.Eventually(t, 30*time.Second, "the poison write dead-lettered", func() error {
		if c.Dead.Load() != 1 {
			return fmt.Errorf("dead = %d", c.Dead.Load())
		}
		return nil
	})
	ctx := context.Background()
	keys, _ := storedKeys(t, f.nats.nc, f.cfg.DeadStream)
	if len(keys) != 1 || keys["poison"] != 1 {
		t.Fatalf("dead-letter stream holds %v, want the poison write once", keys)
	}
	dw, found, err := FindDead(ctx, f.log.js, f.cfg, "poison")
	if err != nil || !found {
		t.Fatalf("FindDead(poison) = %v, %v", found, err)
	}
	if dw.Attempts != 3 || !strings.Contains(dw.LastError, "22P02") && !strings.Contains(dw.LastError, "uuid") {
		t.Fatalf("dead write: attempts %d, last error %q", dw.Attempts, dw.LastError)
	}
	if _, found, err := FindDead(ctx, f.log.js, f.cfg, "a-1"); err != nil || found {
		t.Fatalf("FindDead(a-1) = %v, %v: it was applied", found, err)
	}
	// Each write counts once, when its batch is acknowledged (a batch
	// redelivered past the short AckWait here is found applied, and counts
	// as a duplicate or not at all, never twice).
	testutil.Eventually(t, 30*time.Second, "500 writes committed", func() error {
		if got := c.Committed.Load(); got != 500 {
			return fmt.Errorf("committed %d", got)
		}
		return nil
	})
	// Alone on its consumer, the committer acknowledges by purges.
	if c.Purges.Load() == 0 || c.AckedByPurge.Load() == 0 {
		t.Fatalf("%d purges acknowledged %d batches (%d one by one): want the bulk path", c.Purges.Load(), c.AckedByPurge.Load(), c.AckedSingly.Load())
	}
}

// TestCommittersShareConsumer: two committers on one consumer (two api
// processes on one NATS) each hold batches the other does not know of; a
// purge by either would remove the other's. Every write must be applied
// once and counted once between them, and the stream end empty.
//
// A third process fetched batches first and died holding them: they are
// redelivered after AckWait, and no purge may remove them before.
func TestCommittersShareConsumer(t *testing.T) {
	f := startCommitterFixture(t)
	const writes, first = 3000, 100
	f.appendIngest(t, "s", first)
	dead, err := NewCommitter(context.Background(), f.nats.nc, f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	held, err := dead.cons.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range held.Messages() {
		n++ // fetched, never applied nor acknowledged: the process died
	}
	if n == 0 {
		t.Fatal("the dying process fetched nothing")
	}
	c1, _ := f.runCommitter(t, nil)
	c2, _ := f.runCommitter(t, nil)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := first + w; i < writes; i += 8 {
				wr := Write{Kind: "test-ingest", Key: fmt.Sprintf("s-%d", i), Payload: fmt.Appendf(nil, `{"guid":"%s"}`, guid("s", i)), AcceptedAt: time.Now()}
				if err := f.log.Append(context.Background(), wr); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	f.waitRows(t, writes)
	testutil.Eventually(t, 30*time.Second, "every write counted once", func() error {
		if got := c1.Committed.Load() + c2.Committed.Load(); got != writes {
			return fmt.Errorf("committed %d + %d", c1.Committed.Load(), c2.Committed.Load())
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, "the stream empty", func() error {
		info, err := f.log.js.Stream(context.Background(), f.cfg.Log.Stream)
		if err != nil {
			return err
		}
		si, err := info.Info(context.Background())
		if err != nil {
			return err
		}
		if si.State.Msgs != 0 {
			return fmt.Errorf("%d batches in the stream", si.State.Msgs)
		}
		return nil
	})
	if c1.Committed.Load() == 0 || c2.Committed.Load() == 0 {
		t.Fatalf("committed %d and %d: both committers were to take batches", c1.Committed.Load(), c2.Committed.Load())
	}
	t.Logf("committer 1: %d by purge, %d singly; committer 2: %d by purge, %d singly", c1.AckedByPurge.Load(), c1.AckedSingly.Load(), c2.AckedByPurge.Load(), c2.AckedSingly.Load())
	if d := c1.Duplicates.Load() + c2.Duplicates.Load(); d != 0 {
		t.Logf("%d duplicates (redeliveries past the short AckWait)", d)
	}
}

// TestCommitterCrashBeforeAck: a committer that stops between the database
// commit and the JetStream acknowledgement gets its batch redelivered to
// the next one, which applies nothing twice.
func TestCommitterCrashBeforeAck(t *testing.T) {
	f := startCommitterFixture(t)
	var crashed atomic.Bool
	_, stop := f.runCommitter(t, func() bool { return !crashed.Swap(true) })
	f.appendIngest(t, "c", 100)
	testutil.Eventually(t, 30*time.Second, "the crash", func() error {
		if !crashed.Load() {
			return fmt.Errorf("no batch committed yet")
		}
		return nil
	})
	stop()
	c2, _ := f.runCommitter(t, nil)
	f.waitRows(t, 100)
	testutil.Eventually(t, 30*time.Second, "the redelivered batch", func() error {
		if c2.Duplicates.Load() == 0 {
			return fmt.Errorf("no duplicate seen yet")
		}
		return nil
	})
	f.waitRows(t, 100)
}

// TestCommitterWaitsOutPostgresDown: with PostgreSQL down for a while,
// writes keep being accepted; once it is back every one is applied once,
// and none is dead-lettered (transient failures do not count).
func TestCommitterWaitsOutPostgresDown(t *testing.T) {
	f := startCommitterFixture(t)
	c, _ := f.runCommitter(t, nil)
	f.appendIngest(t, "d", 50)
	f.waitRows(t, 50)
	f.conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.pg.Inst.Stop(ctx, postgres.StopImmediate); err != nil {
		t.Fatal(err)
	}
	f.appendIngest(t, "e", 200) // accepted while the database is down
	testutil.Eventually(t, 30*time.Second, "retries while down", func() error {
		if c.Retried.Load() == 0 {
			return fmt.Errorf("no retry yet")
		}
		return nil
	})
	f.conn = restartPostgres(t, ctx, f.pg)
	f.waitRows(t, 250)
	if d := c.Dead.Load(); d != 0 {
		t.Fatalf("%d writes dead-lettered for a transient outage", d)
	}
}

// TestCommitterCountsOnceAcrossRedelivery: batches committed on a primary
// that is replaced before the standby regions have them are sent back and
// applied again; here the new primary lacks them (the test deletes them, as
// a failover to a member without them would), so the second attempt
// applies them anew. Each write must count once, when its batch is finally
// acknowledged: committed = accepted = rows.
func TestCommitterCountsOnceAcrossRedelivery(t *testing.T) {
	f := startCommitterFixture(t)
	const writes = 100
	var failedOver atomic.Bool
	var stable int
	var rc *pgx.Conn // the replication callback's own connection (one caller)
	t.Cleanup(func() {
		if rc != nil {
			rc.Close(context.Background())
		}
	})
	f.cfg.Replication = func(ctx context.Context) (Replication, error) {
		if failedOver.Load() {
			return Replication{PrimaryTimeline: 1}, nil
		}
		if rc == nil {
			var err error
			if rc, err = pgx.Connect(ctx, f.pg.DSN); err != nil {
				return Replication{}, err
			}
		}
		// Hold every batch (no primary known) until all are committed and
		// queued, then "fail over" to a primary on a later timeline that
		// has none of them.
		var n int
		if err := rc.QueryRow(ctx, "SELECT count(*) FROM test_ingest").Scan(&n); err != nil {
			return Replication{}, err
		}
		if n < writes {
			stable = 0
			return Replication{}, nil
		}
		if stable++; stable < 3 {
			return Replication{}, nil
		}
		if _, err := rc.Exec(ctx, "DELETE FROM test_ingest; DELETE FROM holdfast_buffer_applied"); err != nil {
			return Replication{}, err
		}
		failedOver.Store(true)
		return Replication{PrimaryTimeline: 2}, nil
	}
	c, _ := f.runCommitter(t, nil)
	f.appendIngest(t, "r", writes)
	testutil.Eventually(t, 60*time.Second, "every batch acknowledged", func() error {
		if got := c.Committed.Load(); got != writes {
			return fmt.Errorf("committed %d (failed over: %v)", got, failedOver.Load())
		}
		return nil
	})
	if c.Redelivered.Load() == 0 {
		t.Fatal("no batch was sent back after the primary changed")
	}
	if c.Applied.Load() != writes || c.Duplicates.Load() != 0 {
		t.Fatalf("applied %d, duplicates %d: want %d and 0 (each write counted once, by the attempt that was acknowledged)", c.Applied.Load(), c.Duplicates.Load(), writes)
	}
	f.waitRows(t, writes)
}

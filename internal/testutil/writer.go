package testutil

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/wait"
)

// Writer inserts rows with increasing ids into table acked on whichever
// member Target names, one statement at a time with synchronous commit, and
// records which ids were acknowledged. An id whose INSERT failed is "in
// doubt" and never counted as acknowledged.
type Writer struct {
	// Target returns the connection string of the current primary ("" if
	// none is known).
	Target func() string
	// IDBase is added to every id, so that several writers can share the table.
	IDBase int64

	mu       sync.Mutex
	acked    []int64 // guarded by mu
	failures int     // guarded by mu
	lastOK   time.Time
	cancel   context.CancelFunc
	done     chan struct{}
}

// CreateTable creates the table the Writer inserts into.
func CreateTable(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS acked (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
	return err
}

// Start begins writing until Stop.
func (w *Writer) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go w.run(ctx)
}

func (w *Writer) run(ctx context.Context) {
	defer close(w.done)
	var conn *pgx.Conn
	var connDSN string
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	id := w.IDBase
	for ctx.Err() == nil {
		dsn := w.Target()
		if conn != nil && dsn != connDSN {
			conn.Close(context.Background())
			conn = nil
		}
		if conn == nil {
			if dsn == "" {
				wait.Sleep(ctx, 10*time.Millisecond)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := pgx.Connect(cctx, dsn)
			cancel()
			if err != nil {
				w.fail()
				wait.Sleep(ctx, 10*time.Millisecond)
				continue
			}
			conn, connDSN = c, dsn
		}
		id++
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(ictx, "INSERT INTO acked (id) VALUES ($1)", id)
		cancel()
		if err != nil {
			w.fail()
			conn.Close(context.Background())
			conn = nil
			wait.Sleep(ctx, 5*time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.acked = append(w.acked, id)
		w.lastOK = time.Now()
		w.mu.Unlock()
	}
}

func (w *Writer) fail() {
	w.mu.Lock()
	w.failures++
	w.mu.Unlock()
}

// Stop stops writing and waits.
func (w *Writer) Stop() {
	w.cancel()
	<-w.done
}

// Acked returns the acknowledged ids so far.
func (w *Writer) Acked() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.acked...)
}

// WaitAcked waits until at least n more ids are acknowledged than now.
func (w *Writer) WaitAcked(ctx context.Context, n int) error {
	start := len(w.Acked())
	for len(w.Acked()) < start+n {
		if !wait.Sleep(ctx, 10*time.Millisecond) {
			return fmt.Errorf("writer: only %d of %d more writes acknowledged: %w", len(w.Acked())-start, n, ctx.Err())
		}
	}
	return nil
}

// Verify checks that every acknowledged id is present at dsn and returns
// how many there were.
func (w *Writer) Verify(ctx context.Context, dsn string) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		return 0, err
	}
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return 0, err
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	acked := w.Acked()
	var missing []int64
	for _, id := range acked {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return len(acked), fmt.Errorf("%d acknowledged writes are missing: %v", len(missing), head(missing, 20))
	}
	return len(acked), nil
}

func head(s []int64, n int) []int64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ErrNotYet is returned by Eventually's condition to keep polling.
var ErrNotYet = errors.New("not yet")

// Eventually polls cond every 20ms until it returns nil or the timeout ends,
// then fails the test with the last error.
func Eventually(t interface {
	Helper()
	Fatalf(string, ...any)
}, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

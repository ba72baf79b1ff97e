package chaos

// Reads on the reader endpoint, checked against a sequence writer: a few
// clients write increasing numbers (from one counter) through the proxy's
// writer endpoint and record when each was acknowledged; readers ask the reader endpoint
// for the highest number, again and again, each on its own connection (a
// session), and record what they saw and which member answered. A read
// that misses a number acknowledged longer than the lag bound before it
// began is a stale read (CheckReads).

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// seqDDL is the sequence writer's table: one row per number written.
const seqDDL = `CREATE TABLE IF NOT EXISTS holdfast_chaos_seq (
	run text NOT NULL,
	seq bigint NOT NULL,
	PRIMARY KEY (run, seq)
)`

// Readers and sequence writers of a run, and how often each reads or
// writes. A write waits for the synchronous standby and, during a
// failover, for the next primary: several writers keep numbers coming.
const (
	readers    = 2
	seqWriters = 4
	readEvery  = 50 * time.Millisecond
	seqEvery   = 50 * time.Millisecond
	seqTimeout = 10 * time.Second
)

// ReadResult is what the reads showed: the JSON contract of
// `holdfast drill chaos`'s "reads".
type ReadResult struct {
	// SeqWrites is how many numbers the sequence writer had acknowledged.
	SeqWrites int `json:"seq_writes"`
	Reads     int `json:"reads"`
	Errors    int `json:"errors"`
	Sessions  int `json:"sessions"`
	Stale     int `json:"stale"`
	// BoundMS is the lag bound a read was judged by.
	BoundMS int64 `json:"bound_ms"`
}

// readLoad is the sequence writer and the readers of a run.
type readLoad struct {
	run                string
	writerDSN, readDSN string
	names              map[string]string // "port N" to member

	next atomic.Int64 // the last number taken

	mu       sync.Mutex
	writes   []SeqWrite
	reads    []Read
	errors   int
	sessions int
}

// prepare creates the sequence table (as the application role, through
// the writer endpoint).
func (l *readLoad) prepare(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, l.writerDSN)
	if err != nil {
		return fmt.Errorf("reads: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(cctx, seqDDL); err != nil {
		return fmt.Errorf("reads: %s: %w", "holdfast_chaos_seq", err)
	}
	return nil
}

// loop writes and reads until ctx ends.
func (l *readLoad) loop(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(seqWriters + readers)
	for range seqWriters {
		go func() { defer wg.Done(); l.write(ctx) }()
	}
	for i := range readers {
		go func() { defer wg.Done(); l.read(ctx, i+1) }()
	}
	wg.Wait()
}

// write writes the next numbers (1, 2, 3... among all writers) on one
// connection, a new one after any error; a number whose write failed is
// not used again.
func (l *readLoad) write(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	t := time.NewTicker(seqEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq := l.next.Add(1)
		wctx, cancel := context.WithTimeout(ctx, seqTimeout)
		err := func() error {
			if conn == nil {
				c, err := pgx.Connect(wctx, l.writerDSN)
				if err != nil {
					return err
				}
				conn = c
			}
			_, err := conn.Exec(wctx, "INSERT INTO holdfast_chaos_seq (run, seq) VALUES ($1, $2)", l.run, seq)
			return err
		}()
		cancel()
		if err != nil {
			if conn != nil {
				_ = conn.Close(context.WithoutCancel(ctx))
				conn = nil
			}
			continue
		}
		l.mu.Lock()
		l.writes = append(l.writes, SeqWrite{Seq: seq, Acked: time.Now()})
		l.mu.Unlock()
	}
}

// read asks the reader endpoint for the highest number, every readEvery,
// on one connection at a time (a session each).
func (l *readLoad) read(ctx context.Context, reader int) {
	var conn *pgx.Conn
	var session string
	defer func() {
		if conn != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	t := time.NewTicker(readEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, seqTimeout)
		if conn == nil {
			c, err := pgx.Connect(rctx, l.readDSN)
			if err != nil {
				cancel()
				l.failed(ctx)
				continue
			}
			conn = c
			l.mu.Lock()
			l.sessions++
			session = fmt.Sprintf("reader %d session %d", reader, l.sessions)
			l.mu.Unlock()
		}
		invoked := time.Now()
		var seen int64
		var port int
		err := conn.QueryRow(rctx, "SELECT coalesce(max(seq), 0), inet_server_port() FROM holdfast_chaos_seq WHERE run = $1", l.run).Scan(&seen, &port)
		cancel()
		if err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			conn = nil
			l.failed(ctx)
			continue
		}
		member := fmt.Sprintf("port %d", port)
		if n, ok := l.names[member]; ok {
			member = n
		}
		l.mu.Lock()
		l.reads = append(l.reads, Read{Session: session, Invoked: invoked, Seen: seen, Member: member})
		l.mu.Unlock()
	}
}

// failed counts a read that got no answer (unless the run is ending).
func (l *readLoad) failed(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	l.errors++
	l.mu.Unlock()
}

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

type attempt struct {
	start, end time.Time
	member     int
	id         int64
	ok         bool
}

// writer inserts increasing ids one at a time into the member it last
// succeeded on, moving round-robin to the next member on any error. It
// records every attempt so that downtime and lost writes can be computed.
type writer struct {
	dsns []string

	mu       sync.Mutex
	attempts []attempt // guarded by mu
	cancel   context.CancelFunc
	done     chan struct{}
	cur      int
}

func newWriter(dsns []string, primary int) *writer {
	return &writer{dsns: dsns, cur: primary}
}

func (w *writer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go w.run(ctx)
}

func (w *writer) stop() {
	w.cancel()
	<-w.done
}

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	conns := make([]*pgx.Conn, len(w.dsns))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	var id int64
	for ctx.Err() == nil {
		id++
		a := attempt{start: time.Now(), member: w.cur, id: id}
		err := func() error {
			if conns[w.cur] == nil {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				c, err := pgx.Connect(cctx, w.dsns[w.cur])
				if err != nil {
					return err
				}
				conns[w.cur] = c
			}
			ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := conns[w.cur].Exec(ictx, "INSERT INTO bench (id) VALUES ($1)", id)
			return err
		}()
		a.end, a.ok = time.Now(), err == nil
		if ctx.Err() != nil && !a.ok {
			return
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, a)
		w.mu.Unlock()
		if err != nil {
			if conns[w.cur] != nil {
				conns[w.cur].Close(context.Background())
				conns[w.cur] = nil
			}
			w.cur = (w.cur + 1) % len(w.dsns)
			time.Sleep(2 * time.Millisecond)
			continue
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *writer) snapshot() []attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]attempt(nil), w.attempts...)
}

// waitWrites waits for n more successful writes.
func (w *writer) waitWrites(ctx context.Context, n int) bool {
	count := func() int {
		c := 0
		for _, a := range w.snapshot() {
			if a.ok {
				c++
			}
		}
		return c
	}
	start := count()
	for count() < start+n {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// waitWriteElsewhere waits for the first write that shows the cluster
// serving again after the fault: a success on another member, or on the old
// primary after it had failed at least once (a system that restarts the
// primary in place). Writes that slip into the dying primary right after
// the fault do not count.
func (w *writer) waitWriteElsewhere(ctx context.Context, old int, after time.Time) (time.Time, bool) {
	for {
		var failedAt time.Time
		for _, a := range w.snapshot() {
			if !a.start.After(after) {
				continue
			}
			if !a.ok && failedAt.IsZero() {
				failedAt = a.start
			}
			if a.ok && (a.member != old || (!failedAt.IsZero() && a.start.After(failedAt))) {
				return a.end, true
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// longestGap is the longest time between two successful writes after t.
func (w *writer) longestGap(t time.Time) time.Duration {
	var last time.Time
	var gap time.Duration
	for _, a := range w.snapshot() {
		if !a.ok || a.end.Before(t) {
			continue
		}
		if !last.IsZero() && a.end.Sub(last) > gap {
			gap = a.end.Sub(last)
		}
		last = a.end
	}
	return gap
}

func (w *writer) failedAfter(t time.Time) int {
	n := 0
	for _, a := range w.snapshot() {
		if !a.ok && a.start.After(t) {
			n++
		}
	}
	return n
}

// lost counts acknowledged ids missing from the member of the last
// successful write.
func (w *writer) lost(ctx context.Context) (int, error) {
	as := w.snapshot()
	member := -1
	acked := map[int64]bool{}
	for _, a := range as {
		if a.ok {
			acked[a.id] = true
			member = a.member
		}
	}
	if member < 0 {
		return 0, fmt.Errorf("no successful write")
	}
	conn, err := pgx.Connect(ctx, w.dsns[member])
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM bench")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return 0, err
		}
		delete(acked, id)
	}
	return len(acked), rows.Err()
}

package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// memoryResult is a pooler's resident memory with n idle clients.
type memoryResult struct {
	Target      string  `json:"target"`
	Wanted      int     `json:"idle_clients"`
	Opened      int     `json:"opened"`
	BaselineKiB int64   `json:"rss_before_kib"`
	RSSKiB      int64   `json:"rss_kib"`
	PeakKiB     int64   `json:"rss_peak_kib"`
	PerConnKiB  float64 `json:"kib_per_connection"`
	ServerConns int     `json:"server_connections"` // the pooler's TCP connections to the primary, with the clients open
	FileLimit   string  `json:"pooler_nofile"`
	ConnectTime float64 `json:"connect_seconds"`
	Err         string  `json:"error,omitempty"`
}

const (
	idleConcurrency    = 64
	idleConnectTimeout = 15 * time.Second
)

// measureMemory starts target's pooler, reads its RSS, opens n client
// connections through it (startup and SCRAM authentication, no query),
// reads its RSS again with all of them open, and closes them. It stops
// opening at the first failure and reports how many it held.
func (b *bench) measureMemory(ctx context.Context, target string, n int) memoryResult {
	r := memoryResult{Target: target, Wanted: n}
	p, err := b.startPooler(ctx, target, n)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer p.stop()
	r.FileLimit = fileLimit(p.proc.pid())
	// The readiness ping opened (and closed) one client connection; give
	// the runtime a moment so that the baseline is the settled process.
	time.Sleep(time.Second)
	if r.BaselineKiB, _, err = rssKiB(p.proc.pid()); err != nil {
		r.Err = err.Error()
		return r
	}
	conns := make([]*pgconn.PgConn, n)
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	cs := dsn("127.0.0.1", p.port, b.cluster.app.User, b.cluster.app.Password, b.cluster.app.Database)
	start := time.Now()
	for w := 0; w < min(idleConcurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, idleConnectTimeout)
				c, err := pgconn.Connect(cctx, cs)
				cancel()
				if err != nil {
					failed.Store(true)
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i+1, err) })
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	r.ConnectTime = time.Since(start).Seconds()
	for _, c := range conns {
		if c != nil {
			r.Opened++
		}
	}
	if firstErr != nil {
		r.Err = firstErr.Error()
	} else if ctx.Err() != nil {
		r.Err = ctx.Err().Error()
	}
	log.Printf("memory %s: %d of %d idle clients open after %.1fs", target, r.Opened, n, r.ConnectTime)
	// Idle means idle: no query. A moment for anything the pooler does
	// after a login (a server connection it opens, buffers it frees).
	time.Sleep(2 * time.Second)
	if r.RSSKiB, r.PeakKiB, err = rssKiB(p.proc.pid()); err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	r.ServerConns = -1
	if port, err := b.endpoint(ctx, nil); err == nil {
		if r.ServerConns, err = tcpConnsTo(p.proc.pid(), port); err != nil {
			r.ServerConns = -1
			log.Printf("memory %s: count server connections: %v", target, err)
		}
	}
	if r.Opened > 0 {
		r.PerConnKiB = float64(r.RSSKiB-r.BaselineKiB) / float64(r.Opened)
	}
	var cwg sync.WaitGroup
	for i := 0; i < len(conns); i += 1000 {
		part := conns[i:min(i+1000, len(conns))]
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for _, c := range part {
				if c != nil {
					cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_ = c.Close(cctx)
					cancel()
				}
			}
		}()
	}
	cwg.Wait()
	return r
}

package agent

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/postgres"
)

// lagTracker turns the heartbeats a replica sees into its lag in time.
//
// A heartbeat written at T and first seen at S gives the sample S - T: an
// upper bound of the replication delay, over by at most one poll. Between
// heartbeats the lag is also at least how overdue the next one is: the
// primary writes one every interval, so a replica whose newest heartbeat is
// T has not seen what was written after T + interval. Before anything is
// seen the lag is unknown. Clocks of different hosts must agree (NTP); a
// negative sample (clock skew) counts as 0.
type lagTracker struct {
	mu       sync.Mutex
	interval time.Duration
	beat     time.Time // newest heartbeat seen
	sample   time.Duration
}

// observe records a poll at now that read the heartbeat written at beat.
func (t *lagTracker) observe(beat, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !beat.After(t.beat) {
		return
	}
	t.beat, t.sample = beat, max(now.Sub(beat), 0)
}

// reset forgets what was seen (the server became a primary, or restarted
// from a new copy).
func (t *lagTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.beat, t.sample = time.Time{}, 0
}

// lag is the lag at now; ok is false while no heartbeat has been seen.
func (t *lagTracker) lag(now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.beat.IsZero() {
		return 0, false
	}
	return max(t.sample, now.Sub(t.beat)-t.interval, 0), true
}

// heartbeatLoop writes the heartbeat row while this agent leads a primary,
// and otherwise reads it into a.hb. It runs beside the member loop with a
// connection of its own and stops with ctx.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	interval := a.cfg.Agent.HeartbeatInterval.D()
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var lastBeat, lastConnect time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil {
			// A server that is down is retried once a second, not every poll.
			if time.Since(lastConnect) < time.Second {
				continue
			}
			lastConnect = time.Now()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := a.pg.HeartbeatConn(cctx)
			cancel()
			if err != nil {
				continue
			}
			conn = c
		}
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		err := a.heartbeatOnce(qctx, conn, interval, &lastBeat)
		cancel()
		if err != nil {
			a.log.Debug("heartbeat", "err", err)
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func (a *Agent) heartbeatOnce(ctx context.Context, conn *pgx.Conn, interval time.Duration, lastBeat *time.Time) error {
	hb, inRecovery, ok, err := postgres.ReadHeartbeat(ctx, conn)
	if err != nil {
		return err
	}
	now := time.Now()
	if inRecovery {
		if ok {
			a.hb.observe(hb.At, now)
		}
		return nil
	}
	a.hb.reset()
	// Only the leader's PostgreSQL writes: a primary that is not (or no
	// longer) under our leader key is about to be fenced, and must not
	// gain WAL its successor lacks. And only once its first transaction id
	// is known (see readIncarnation).
	if !a.leading.Load() || !a.xidKnown.Load() || now.Sub(*lastBeat) < interval {
		return nil
	}
	*lastBeat = now
	return postgres.Beat(ctx, conn, a.me.Name)
}

package agent

import (
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

// actionBackoff spaces out an action that keeps failing. The loop steps on
// every change in etcd, its own reports included: an action that fails
// and changes what the member reports (a promotion that restarts
// PostgreSQL, which then cannot finish recovery) was retried about 20
// times a second for minutes, spinning a core while the cluster waited.
// The first failures are retried at once (a failover must not wait); from
// the third in a row of the same plan, the next attempt waits, doubling
// from backoffFirst up to backoffMax.
type actionBackoff struct {
	action cluster.Action
	target string
	fails  int
	until  time.Time
}

const (
	backoffFreeFailures = 2
	backoffFirst        = 100 * time.Millisecond
	backoffMax          = 2 * time.Second
)

// wait reports how long plan p must still wait at now (0: go ahead).
func (b *actionBackoff) wait(p cluster.Plan, now time.Time) time.Duration {
	if p.Action != b.action || p.Target != b.target || !now.Before(b.until) {
		return 0
	}
	return b.until.Sub(now)
}

// done records the outcome of carrying p out at now.
func (b *actionBackoff) done(p cluster.Plan, err error, now time.Time) {
	if err == nil || p.Action == cluster.ActNone {
		*b = actionBackoff{}
		return
	}
	if p.Action != b.action || p.Target != b.target {
		*b = actionBackoff{action: p.Action, target: p.Target}
	}
	b.fails++
	if b.fails <= backoffFreeFailures {
		b.until = time.Time{}
		return
	}
	d := backoffFirst << min(b.fails-backoffFreeFailures-1, 10)
	b.until = now.Add(min(d, backoffMax))
}

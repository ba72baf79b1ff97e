package agent

import (
	"context"
	"fmt"
	"time"
)

// progressEvery is the longest an agent stays silent while an action is in
// progress or while it waits for something before it can act.
const progressEvery = 10 * time.Second

// inProgress logs, every progressEvery until the returned stop is called,
// that what is still running and for how long: a pg_rewind or a base backup
// against a frozen source, or a start that takes minutes of WAL replay,
// must not look like a hung agent.
func (a *Agent) inProgress(ctx context.Context, what string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				a.log.Info("still "+what, "for", time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// waitingFor logs why the agent is not acting, when the reason changes and
// at most every progressEvery while it stays the same.
func (a *Agent) waitingFor(format string, args ...any) {
	why := fmt.Sprintf(format, args...)
	if why == a.waitWhy && time.Since(a.waitLogged) < progressEvery {
		return
	}
	if why != a.waitWhy {
		a.waitSince = time.Now()
	}
	a.waitWhy, a.waitLogged = why, time.Now()
	a.log.Info("waiting: "+why, "for", time.Since(a.waitSince).Round(time.Second))
}

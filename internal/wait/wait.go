// Package wait has the one helper every loop that retries needs: a sleep
// that a context cuts short.
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends: false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

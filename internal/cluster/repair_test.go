package cluster

import (
	"testing"
	"time"
)

func TestNotStreamingRepair(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// base: pointed at a running upstream 11 s ago, consistent, never
	// rewound, never streamed.
	base := Follower{Now: now, FollowSince: ago(11 * time.Second), Consistent: true, StartTimeout: time.Minute,
		UpstreamRunning: true, CanRewind: true}
	for _, tc := range []struct {
		name  string
		edit  func(*Follower)
		want  Repair
		bound time.Duration
	}{
		{"not streaming past the bound: rewind", func(*Follower) {}, RepairRewind, NotStreamingAfter},
		{"within the bound: wait", func(f *Follower) { f.FollowSince = ago(9 * time.Second) }, RepairNone, 0},
		{"exactly the bound: wait", func(f *Follower) { f.FollowSince = ago(NotStreamingAfter) }, RepairNone, 0},
		{"nothing to rewind from: wait", func(f *Follower) { f.CanRewind = false }, RepairNone, 0},
		{"not consistent yet, within the start timeout: wait", func(f *Follower) { f.Consistent = false }, RepairNone, 0},
		{"not consistent, past the start timeout: rewind", func(f *Follower) { f.Consistent, f.FollowSince = false, ago(61*time.Second) },
			RepairRewind, time.Minute},
		{"rewound just now, nothing streamed since, upstream runs: copy", func(f *Follower) { f.RewoundAt = ago(11 * time.Second) },
			RepairCopy, NotStreamingAfter},
		{"rewound just now, streamed before it only: copy", func(f *Follower) {
			f.RewoundAt, f.StreamedAt = ago(11*time.Second), ago(20*time.Second)
		}, RepairCopy, NotStreamingAfter},
		{"rewound, then streamed, then stopped: rewind", func(f *Follower) {
			f.RewoundAt, f.StreamedAt, f.FollowSince = ago(40*time.Second), ago(30*time.Second), ago(30*time.Second)
		}, RepairRewind, NotStreamingAfter},
		{"rewound just now, upstream not running: rewind", func(f *Follower) {
			f.RewoundAt, f.UpstreamRunning = ago(11*time.Second), false
		}, RepairRewind, NotStreamingAfter},
		{"rewound long ago, never streamed since: rewind", func(f *Follower) {
			f.RewoundAt, f.FollowSince = ago(2*time.Minute), ago(2*time.Minute)
		}, RepairRewind, NotStreamingAfter},
	} {
		f := base
		tc.edit(&f)
		got, bound := NotStreamingRepair(f)
		if got != tc.want || bound != tc.bound {
			t.Errorf("%s: %s after %s, want %s after %s", tc.name, got, bound, tc.want, tc.bound)
		}
	}
}

func TestLeaseValid(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	margin := 500 * time.Millisecond
	for _, tc := range []struct {
		until time.Duration // validUntil - now
		want  bool
	}{
		{2 * time.Second, true},
		{501 * time.Millisecond, true},
		{500 * time.Millisecond, false}, // exactly the margin left: fence
		{100 * time.Millisecond, false},
		{-time.Second, false}, // expired
	} {
		if got := LeaseValid(now, now.Add(tc.until), margin); got != tc.want {
			t.Errorf("%s left, margin %s: valid %v, want %v", tc.until, margin, got, tc.want)
		}
	}
}

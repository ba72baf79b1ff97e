// Package region runs what a standby region needs besides replication: the
// canary that probes the primary region and fails over to its own region
// when the primary region is lost.
//
// The canary acts only when it is safe as well as necessary: after
// failover.canary_failures consecutive failed probes (any success resets
// the count), and only once the primary region's leader key has expired in
// etcd, so that its primary has already demoted itself (invariant 1). While
// members of the primary region are alive with PostgreSQL running, that
// region is electing a primary of its own: the canary waits for it up to
// failover.canary_election_grace of continuous leaderlessness (a primary
// that fails again and again must not send the cluster to another region
// between two of its own elections). Two
// canaries cannot both act: the region failover is a compare-and-swap on
// the topology's primary region, and the loser is refused.
package region

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// State is a canary's state, as `region status` shows it.
type State struct {
	Region string `json:"region"`
	// Active is false while the canary's region is the primary region.
	Active              bool      `json:"active"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastProbeAt         time.Time `json:"last_probe_at,omitzero"`
	LastOKAt            time.Time `json:"last_ok_at,omitzero"`
	LastError           string    `json:"last_error,omitempty"`
	// Waiting says why a canary past its failure limit has not acted.
	Waiting string    `json:"waiting,omitempty"`
	ActedAt time.Time `json:"acted_at,omitzero"`
}

// Canary probes the primary region on behalf of one standby region.
type Canary struct {
	Store  *store.Store
	Cfg    config.Config // resolved
	Region string
	// App reaches the database as the application role.
	App config.Credentials
	Log *slog.Logger

	state State
	// leaderless is when the canary first saw the primary region without
	// a leader since it last saw one (zero while it has one).
	leaderless time.Time
}

// Run probes every failover.canary_interval until ctx ends.
func (c *Canary) Run(ctx context.Context) {
	c.state.Region = c.Region
	t := time.NewTicker(c.Cfg.Failover.CanaryInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.step(ctx)
	}
}

func (c *Canary) step(ctx context.Context) {
	snap, err := c.Store.Snapshot(ctx)
	if err != nil {
		c.Log.Warn("canary: read cluster state", "region", c.Region, "err", err)
		return
	}
	primaryRegion := admin.PrimaryRegion(c.Cfg, snap.Topology)
	if primaryRegion == c.Region {
		if c.state.Active {
			c.state = State{Region: c.Region}
			c.publish(ctx)
		}
		return
	}
	c.state.Active = true
	if _, ok := snap.Leaders[primaryRegion]; ok {
		c.leaderless = time.Time{}
	} else if c.leaderless.IsZero() {
		c.leaderless = time.Now()
	}
	pctx, cancel := context.WithTimeout(ctx, c.Cfg.Failover.CanaryInterval.D()/2)
	err = c.probe(pctx, snap)
	cancel()
	c.state.LastProbeAt = time.Now()
	if err == nil {
		c.state.ConsecutiveFailures, c.state.LastOKAt, c.state.LastError, c.state.Waiting = 0, c.state.LastProbeAt, "", ""
		c.publish(ctx)
		return
	}
	c.state.ConsecutiveFailures++
	c.state.LastError = err.Error()
	c.Log.Warn("canary: probe of the primary region failed", "region", c.Region, "primary_region", primaryRegion,
		"consecutive_failures", c.state.ConsecutiveFailures, "err", err)
	if c.state.ConsecutiveFailures >= c.Cfg.Failover.CanaryFailures {
		c.act(ctx, snap, primaryRegion)
	}
	c.publish(ctx)
}

// Safe says whether a canary of region, past its failure limit, may fail
// over now, and if not what it waits for. members are the live members
// (their agents' keys exist); leaderless is how long the primary region has
// been without a leader without interruption, as the canary saw it.
func Safe(t cluster.Topology, leaders map[string]cluster.Leader, members map[string]cluster.Member, region, primaryRegion string, leaderless, grace time.Duration) (bool, string) {
	if t.Paused {
		return false, "the cluster is paused: no automatic failover"
	}
	if l, ok := leaders[primaryRegion]; ok {
		return false, fmt.Sprintf("region %s still holds its leader lease (%s): waiting for it to expire", primaryRegion, l.Member)
	}
	if _, ok := leaders[region]; !ok {
		return false, fmt.Sprintf("region %s has no standby leader", region)
	}
	if alive := runningIn(members, primaryRegion); len(alive) > 0 && leaderless < grace {
		return false, fmt.Sprintf("region %s is electing a primary (%s running): waiting up to %s without a leader (%s so far)",
			primaryRegion, strings.Join(alive, ", "), grace, leaderless.Round(time.Second))
	}
	return true, ""
}

// runningIn lists the live members of region whose PostgreSQL runs: the
// candidates of that region's own election.
func runningIn(members map[string]cluster.Member, region string) []string {
	var out []string
	for name, m := range members {
		if m.Region == region && m.State == cluster.StateRunning {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// act starts the region failover when it is safe.
func (c *Canary) act(ctx context.Context, snap store.Snapshot, primaryRegion string) {
	var leaderless time.Duration
	if !c.leaderless.IsZero() {
		leaderless = time.Since(c.leaderless)
	}
	ok, waiting := Safe(snap.Topology, snap.Leaders, snap.Members, c.Region, primaryRegion, leaderless, c.Cfg.Failover.CanaryElectionGrace.D())
	c.state.Waiting = waiting
	if !ok {
		return
	}
	msg := fmt.Sprintf("canary of %s: %d consecutive failed probes of %s and its lease has expired: region failover", c.Region, c.state.ConsecutiveFailures, primaryRegion)
	c.Log.Warn(msg)
	_ = c.Store.AppendEvent(ctx, cluster.Event{Kind: cluster.EventCanaryActed, Message: msg})
	res, loss, err := admin.RegionFailover(ctx, c.Store, c.Cfg, c.Region, int64(c.Cfg.Failover.CanaryMaxDataLoss), false, func(s string) { c.Log.Info("canary: " + s) })
	if err != nil {
		c.state.LastError = "region failover: " + err.Error()
		// Refused (more than failover.canary_max_data_loss may be lost,
		// say: an operator decides) or failed: say why it has not acted.
		c.state.Waiting = err.Error()
		c.Log.Warn("canary: region failover not done", "region", c.Region, "err", err)
		return
	}
	c.state.ActedAt, c.state.ConsecutiveFailures = time.Now(), 0
	c.Log.Info("canary: region failover done", "region", c.Region, "primary", res.To, "took", res.Took, "data_loss_known", loss.Known, "window_bytes", loss.WindowBytes)
}

// probe writes and reads back a row through the primary's writer: a
// proxy's writer endpoint when there is one, else the primary itself.
func (c *Canary) probe(ctx context.Context, snap store.Snapshot) error {
	// Through the writer endpoint the region's clients use: its own
	// proxy's, else the primary region's.
	host := c.Cfg.Proxy.WriterAddr
	if rp, ok := c.Cfg.RegionProxy(c.Region); ok && rp.WriterAddr != "" {
		host = rp.WriterAddr
	}
	if !c.Cfg.Proxy.Enabled || host == "" {
		l, ok := snap.Leaders[admin.PrimaryRegion(c.Cfg, snap.Topology)]
		if !ok {
			return fmt.Errorf("no primary")
		}
		m, ok := snap.Members[l.Member]
		if !ok {
			return fmt.Errorf("no report from the primary %s", l.Member)
		}
		host = fmt.Sprintf("%s:%d", m.Host, m.Port)
	}
	dsn := (&url.URL{Scheme: "postgres", User: url.UserPassword(c.App.User, c.App.Password), Host: host,
		Path: "/" + c.Cfg.Postgres.AppDatabase, RawQuery: "sslmode=disable"}).String()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := buffer.RunDDL(ctx, conn, []string{`CREATE TABLE IF NOT EXISTS holdfast_canary (region text PRIMARY KEY, probed_at timestamptz NOT NULL)`}); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := conn.Exec(ctx, `INSERT INTO holdfast_canary (region, probed_at) VALUES ($1, $2)
		ON CONFLICT (region) DO UPDATE SET probed_at = excluded.probed_at`, c.Region, now); err != nil {
		return err
	}
	var got time.Time
	if err := conn.QueryRow(ctx, `SELECT probed_at FROM holdfast_canary WHERE region = $1`, c.Region).Scan(&got); err != nil {
		return err
	}
	if !got.Equal(now) {
		return fmt.Errorf("read back %s, wrote %s", got, now)
	}
	return nil
}

func (c *Canary) publish(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Store.PutCanary(pctx, c.Region, c.state); err != nil {
		c.Log.Debug("canary: publish state", "err", err)
	}
}

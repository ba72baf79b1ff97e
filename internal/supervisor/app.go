package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/agent"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/postgres"
)

// ensureApp creates the application role and database on the primary. The
// commits wait for a synchronous replica, so this also proves the cluster
// accepts durable writes. It returns the primary it used. The primary is looked up again before each
// attempt: right after a restart etcd may still name the primary of the
// previous run, which is about to be replaced.
func (s *Supervisor) ensureApp(ctx context.Context, primary cluster.Member, app config.Credentials) (cluster.Member, error) {
	adminCred, repl, err := s.d.LoadSecrets()
	if err != nil {
		return primary, err
	}
	s.printf("creating role %q and database %q (waits for a synchronous replica)...", app.User, app.Database)
	for {
		err = s.createApp(ctx, primary, adminCred, repl, app)
		if err == nil {
			return primary, nil
		}
		select {
		case <-ctx.Done():
			return primary, fmt.Errorf("create application role and database: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
		if p, perr := s.waitPrimary(ctx); perr == nil {
			primary = p
		}
	}
}

func (s *Supervisor) createApp(ctx context.Context, primary cluster.Member, adminCred, repl, app config.Credentials) error {
	m, _, ok := s.d.FindMember(primary.Name)
	if !ok {
		return fmt.Errorf("primary %s is not in the config", primary.Name)
	}
	inst, err := postgres.New(agent.PostgresConfig(s.d, m, adminCred, repl), s.log)
	if err != nil {
		return err
	}
	if err := inst.EnsureRole(ctx, app.User, app.Password, false); err != nil {
		return err
	}
	return inst.EnsureDatabase(ctx, app.Database, app.User)
}

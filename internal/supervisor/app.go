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
// accepts durable writes.
func (s *Supervisor) ensureApp(ctx context.Context, primary cluster.Member, app config.Credentials) error {
	m, _, ok := s.d.FindMember(primary.Name)
	if !ok {
		return fmt.Errorf("primary %s is not in the config", primary.Name)
	}
	adminCred, repl, err := s.d.LoadSecrets()
	if err != nil {
		return err
	}
	inst, err := postgres.New(agent.PostgresConfig(s.d, m, adminCred, repl), s.log)
	if err != nil {
		return err
	}
	s.printf("creating role %q and database %q (waits for a synchronous replica)...", app.User, app.Database)
	for {
		err = inst.EnsureRole(ctx, app.User, app.Password, false)
		if err == nil {
			err = inst.EnsureDatabase(ctx, app.Database, app.User)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create application role and database: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/oauth"
	"github.com/holdfast/holdfast/internal/store"
	"github.com/holdfast/holdfast/internal/web"
)

// DemoClient is the OAuth2 client holdfast up creates, with both scopes;
// its secret is in <secrets_dir>/api-client.env.
const (
	DemoClient       = "demo"
	ClientSecretsEnv = "api-client.env"
)

// APIStack is the HTTP side of a deployment: the durable write buffer and
// the api server (buffer ingest and administration, OAuth2 tokens, the
// ToDo API, metrics). `holdfast up` and `holdfast api` run one.
type APIStack struct {
	Buffer *buffer.Service // nil when buffer.enabled is false
	Server *api.Server     // nil when api.enabled is false
	Lab    *web.Lab        // nil until StartLab

	adminToken     string
	writer, reader *pgxpool.Pool
	access         *os.File
}

// StartAPIStack starts what d enables. The application role app reaches
// PostgreSQL through the proxy (or the members directly). st, if not nil,
// lets the write buffer hold acknowledgements until the standby regions
// have each commit.
func StartAPIStack(ctx context.Context, d config.Config, app config.Credentials, st *store.Store, log *slog.Logger) (_ *APIStack, err error) {
	a := &APIStack{}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if d.API.Enabled {
		cfg := api.Config{Addr: d.API.Addr}
		if d.API.AccessLog != "" {
			if err := os.MkdirAll(filepath.Dir(d.API.AccessLog), 0o755); err != nil {
				return nil, fmt.Errorf("api.access_log: %w", err)
			}
			if a.access, err = os.OpenFile(d.API.AccessLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640); err != nil {
				return nil, fmt.Errorf("api.access_log: %w", err)
			}
			cfg.AccessLog = slog.New(slog.NewJSONHandler(a.access, nil))
		}
		a.Server = api.New(cfg, log)
	}
	if d.Buffer.Enabled {
		bc, err := BufferConfig(d, app)
		if err != nil {
			return nil, err
		}
		if st != nil && len(d.Regions) > 1 {
			bc.Committer.Replication = ReplicationFromStore(d, st)
		}
		if a.Server != nil {
			bc.Registerer = a.Server.Registry()
		}
		if a.Buffer, err = buffer.StartService(ctx, bc, log); err != nil {
			return nil, fmt.Errorf("write buffer: %w", err)
		}
		if a.Server != nil {
			a.Buffer.Register(a.Server.Mux())
		}
	}
	if a.Server == nil {
		return a, nil
	}
	token, err := api.EnsureToken(d.API.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	a.Server.SetAdminToken(token)
	a.adminToken = token
	if a.Buffer != nil {
		a.Buffer.RegisterAdmin(a.Server.Mux(), a.Server.Guard)
	}
	if err := a.startTodos(ctx, d, app, log); err != nil {
		return nil, err
	}
	return a, a.Server.Start()
}

// startTodos wires OAuth2 and the ToDo API.
func (a *APIStack) startTodos(ctx context.Context, d config.Config, app config.Credentials, log *slog.Logger) error {
	keys, err := oauth.LoadOrCreateKeys(d.API.KeysFile)
	if err != nil {
		return fmt.Errorf("api.keys_file: %w", err)
	}
	auth, err := oauth.NewServer(oauth.ServerConfig{ClientsFile: d.API.ClientsFile, Keys: keys,
		Issuer: d.API.Issuer, Audience: d.API.Audience, TTL: d.API.TokenTTL.D(), Log: log})
	if err != nil {
		return err
	}
	auth.Register(a.Server.Mux())
	size := apiPoolSize(d)
	if a.writer, err = newPool(ctx, appDSN(d, app, false), size); err != nil {
		return err
	}
	if a.reader, err = newPool(ctx, appDSN(d, app, true), size); err != nil {
		return err
	}
	store := api.NewStore(a.writer, a.reader)
	// The tables are created at start. Right after the cluster came up a
	// replica may not have replayed the application role yet (and, with no
	// proxy, a connection attempt may land on it): retry for a while.
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := store.Migrate(mctx)
		if err == nil {
			break
		}
		select {
		case <-mctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	var sub api.Submitter
	if a.Buffer != nil {
		sub = a.Buffer
	}
	authz := api.RateLimited(api.NewRateLimiter(d.API.RateLimit, d.API.RateBurst), api.OAuth(auth))
	api.NewTodoAPI(api.TodoConfig{Mode: d.API.WriteMode, MaxBody: int64(d.API.MaxBodySize), Timeout: d.API.RequestTimeout.D(), Log: log.With("component", "todo-api")},
		store, sub, authz).Register(a.Server.Mux())
	a.Server.SetReady(func(ctx context.Context) error { return a.writer.Ping(ctx) })
	return nil
}

// apiPoolSize is how many connections the ToDo API opens per endpoint. In
// session pooling each one holds one of the proxy's proxy.pool_size
// server connections for good: the API must leave room for the write
// buffer (its committer and lookups, 5) or its connections beyond the pool
// would wait for a server forever.
func apiPoolSize(d config.Config) int32 {
	if d.Proxy.Enabled && d.Proxy.PoolMode == "session" {
		return int32(max(2, d.Proxy.PoolSize-6))
	}
	return 32
}

func newPool(ctx context.Context, dsn string, size int32) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = size
	return pgxpool.NewWithConfig(ctx, pc)
}

// EnsureDemoClient creates the demo OAuth2 client (both scopes) unless it
// exists, and writes its credentials to <secrets_dir>/api-client.env.
func EnsureDemoClient(d config.Config) (string, error) {
	envPath := filepath.Join(d.Postgres.SecretsDir, ClientSecretsEnv)
	clients, err := oauth.LoadClients(d.API.ClientsFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, c := range clients {
		if c.ID == DemoClient {
			if _, err := os.Stat(envPath); err == nil {
				return envPath, nil
			}
			return envPath, fmt.Errorf("OAuth2 client %q exists in %s but %s is missing: remove the client from the file to have a new one created", DemoClient, d.API.ClientsFile, envPath)
		}
	}
	secret, err := oauth.CreateClient(d.API.ClientsFile, DemoClient, []string{api.ScopeRead, api.ScopeUpsertDelete})
	if err != nil {
		return "", err
	}
	content := fmt.Sprintf("CLIENT_ID=%s\nCLIENT_SECRET=%s\nexport CLIENT_ID CLIENT_SECRET\n", DemoClient, secret)
	if strings.ContainsAny(secret, "'\"\\$` \n") {
		return "", fmt.Errorf("generated secret needs quoting")
	}
	return envPath, os.WriteFile(envPath, []byte(content), 0o600)
}

// StartLab adds the lab's dashboard to the api server (at /, opened with
// DashboardURL). It needs the cluster's store.
func (a *APIStack) StartLab(st *store.Store, d config.Config, log *slog.Logger) {
	if a.Server == nil || a.Lab != nil {
		return
	}
	a.Lab = web.New(web.Config{Store: st, Deployment: d, AdminToken: a.adminToken, Buffer: a.Buffer, Registerer: a.Server.Registry()}, log)
	a.Lab.Register(a.Server.Mux())
	a.Lab.Start()
}

// DashboardURL opens the dashboard (it carries the admin token).
func (a *APIStack) DashboardURL() string {
	if a.Lab == nil {
		return ""
	}
	return web.URL(a.Server.Addr(), a.adminToken)
}

// Close stops the lab, the server, then the buffer, and closes the pools.
func (a *APIStack) Close() {
	if a.Lab != nil {
		a.Lab.Close()
	}
	if a.Server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.Server.Close(ctx)
		cancel()
	}
	if a.Buffer != nil {
		a.Buffer.Close()
	}
	for _, p := range []*pgxpool.Pool{a.writer, a.reader} {
		if p != nil {
			p.Close()
		}
	}
	if a.access != nil {
		_ = a.access.Close()
	}
}

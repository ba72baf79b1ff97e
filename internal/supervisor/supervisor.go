// Package supervisor runs a whole deployment on one machine for `holdfast
// up`: an embedded etcd, and every member's agent as its own OS process (so
// that a drill can kill a member for real). It restarts agents that die,
// creates the application role and database, prints the endpoints, and
// stops everything in order.
//
// Risk: stopping the cluster must not look like a failure to the agents, or
// members would fail over while being shut down. Close pauses the cluster
// first (no automatic promotion) and stops the primary before the replicas so
// they receive its last WAL; the next Open resumes it.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/region"
	"github.com/holdfast/holdfast/internal/store"
)

// Config configures a Supervisor.
type Config struct {
	// Deployment is the validated deployment config.
	Deployment config.Config
	// Binary is the holdfast executable agents run from (default: this one).
	Binary string
	// Out receives progress, endpoints and the event stream.
	Out io.Writer
	// RestartDelay is how long a dead agent stays dead before it is
	// restarted (a node "reboot"); negative disables restarts.
	RestartDelay time.Duration
	// ReadyTimeout bounds waiting for the first primary and the app role.
	ReadyTimeout time.Duration
	// QuietEvents stops the event stream from being printed.
	QuietEvents bool
}

// Supervisor owns the local deployment.
type Supervisor struct {
	cfg   Config
	d     config.Config
	log   *slog.Logger
	etcd  *store.Embedded
	st    *store.Store
	proxy *proxy.Service
	// regionProxies are the other regions' own proxies (regions[].proxy).
	regionProxies map[string]*proxy.Service
	stack         *APIStack

	// ConfigPath is the resolved config written for the agents.
	ConfigPath string

	mu     sync.Mutex
	agents map[string]*agentProc   // guarded by mu
	links  map[string]*memberLinks // guarded by mu
	closed bool                    // guarded by mu

	ctx    context.Context
	cancel context.CancelFunc
	// canaryCtx ends first on Close: stopping the cluster must not look
	// like a lost region.
	canaryCtx    context.Context
	stopCanaries context.CancelFunc
	wg           sync.WaitGroup
}

// New checks the configuration; Open starts things.
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("supervisor: find own executable: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 5 * time.Second
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 3 * time.Minute
	}
	if err := cfg.Deployment.Validate(); err != nil {
		return nil, err
	}
	cfg.Deployment.Resolve()
	if cfg.Deployment.API.AccessLog == "" {
		cfg.Deployment.API.AccessLog = filepath.Join(cfg.Deployment.DataDir, "logs", "api-access.log")
	}
	return &Supervisor{cfg: cfg, d: cfg.Deployment, log: log.With("component", "supervisor"), agents: map[string]*agentProc{}, links: map[string]*memberLinks{}}, nil
}

func (s *Supervisor) printf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Out, format+"\n", args...)
}

// DashboardURL opens the lab's dashboard ("" without an api server).
func (s *Supervisor) DashboardURL() string {
	if s.stack == nil {
		return ""
	}
	return s.stack.DashboardURL()
}

// Store is the supervisor's etcd client (valid after Open).
func (s *Supervisor) Store() *store.Store { return s.st }

// Open starts etcd and the agents and waits until the cluster serves writes.
// It refuses, changing nothing, when a port is taken or the data directory
// belongs to another cluster.
func (s *Supervisor) Open(ctx context.Context) error {
	if err := s.preflight(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.d.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := s.claimDataDir(); err != nil {
		return err
	}
	admin, _, app, err := s.d.EnsureSecrets()
	if err != nil {
		return err
	}
	if s.d.Proxy.Enabled {
		if err := proxy.EnsureUsersFile(s.d.Proxy.UsersFile, app, admin); err != nil {
			return err
		}
		if _, err := proxy.EnsureCertificate(s.d.Proxy.TLSCertFile, s.d.Proxy.TLSKeyFile, proxy.CertificateHosts(s.d.Proxy.WriterAddr, s.d.Proxy.ReaderAddr)); err != nil {
			return err
		}
	}
	if err := s.writeConfig(); err != nil {
		return err
	}
	if s.d.Etcd.Embedded {
		ec := store.DefaultEmbedConfig()
		ec.Name = s.d.Cluster
		ec.DataDir = filepath.Join(s.d.DataDir, "etcd")
		ec.ClientURL, ec.PeerURL = s.d.Etcd.ClientURL, s.d.Etcd.PeerURL
		s.etcd, err = store.StartEmbedded(ctx, ec, s.log)
		if err != nil {
			return err
		}
		s.printf("etcd         %s (data %s)", s.d.Etcd.ClientURL, ec.DataDir)
	}
	s.st, err = store.Open(store.Config{Cluster: s.d.Cluster, Endpoints: s.d.Etcd.Endpoints,
		DialTimeout: s.d.Etcd.DialTimeout.D(), RequestTimeout: s.d.Etcd.RequestTimeout.D()}, s.log)
	if err != nil {
		s.closeEtcd()
		return err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.canaryCtx, s.stopCanaries = context.WithCancel(s.ctx)
	if err := s.startLinks(); err != nil {
		_ = s.Close(context.Background())
		return err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.applyFaults(s.ctx) }()
	if !s.cfg.QuietEvents {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.printEvents(s.ctx) }()
	}
	for _, name := range s.d.MemberNames() {
		if err := s.startAgent(name); err != nil {
			_ = s.Close(context.Background())
			return err
		}
	}
	if err := s.resumeIfWePaused(ctx); err != nil {
		s.log.Warn("resume cluster", "err", err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	primary, err := s.waitPrimary(rctx)
	if err != nil {
		_ = s.Close(context.Background())
		return fmt.Errorf("cluster did not become ready: %w (agent logs: %s)", err, filepath.Join(s.d.DataDir, "logs"))
	}
	if primary, err = s.ensureApp(rctx, primary, app); err != nil {
		_ = s.Close(context.Background())
		return err
	}
	if s.d.Proxy.Enabled {
		if s.proxy, err = proxy.Start(s.d, s.st, s.log); err != nil {
			_ = s.Close(context.Background())
			return err
		}
		for _, r := range s.d.Regions {
			if r.Name == s.d.PrimaryRegion || r.Proxy.IsZero() {
				continue
			}
			p, err := proxy.StartRegion(s.d, r.Name, s.st, s.log)
			if err != nil {
				_ = s.Close(context.Background())
				return err
			}
			if s.regionProxies == nil {
				s.regionProxies = map[string]*proxy.Service{}
			}
			s.regionProxies[r.Name] = p
		}
	}
	if s.d.API.Enabled {
		if _, err := EnsureDemoClient(s.d); err != nil {
			_ = s.Close(context.Background())
			return err
		}
	}
	if s.stack, err = StartAPIStack(rctx, s.d, app, s.st, s.log); err != nil {
		_ = s.Close(context.Background())
		return err
	}
	s.stack.StartLab(s.st, s.d, s.log)
	if s.d.Failover.Canary && len(s.d.Regions) > 1 {
		// One canary per region: each probes the primary region while its
		// own region is a standby region.
		for _, r := range s.d.Regions {
			c := &region.Canary{Store: s.st, Cfg: s.d, Region: r.Name, App: app, Log: s.log.With("component", "canary")}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); c.Run(s.canaryCtx) }()
		}
	}
	s.printEndpoints(primary)
	return nil
}

// preflight refuses ports that something else listens on.
func (s *Supervisor) preflight() error {
	check := func(what, addr string) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %s is already in use (is another `holdfast up` or PostgreSQL running?): %w", what, addr, err)
		}
		return l.Close()
	}
	if s.d.Proxy.Enabled {
		for what, addr := range map[string]string{"proxy.writer_addr": s.d.Proxy.WriterAddr, "proxy.reader_addr": s.d.Proxy.ReaderAddr, "proxy.admin_addr": s.d.Proxy.AdminAddr} {
			if addr == "" {
				continue
			}
			if err := check(what, addr); err != nil {
				return err
			}
		}
		for i, r := range s.d.Regions {
			for what, addr := range map[string]string{"writer_addr": r.Proxy.WriterAddr, "reader_addr": r.Proxy.ReaderAddr, "admin_addr": r.Proxy.AdminAddr} {
				if addr == "" || r.Name == s.d.PrimaryRegion {
					continue
				}
				if err := check(fmt.Sprintf("regions[%d].proxy.%s", i, what), addr); err != nil {
					return err
				}
			}
		}
	}
	if s.d.API.Enabled {
		if err := check("api.addr", s.d.API.Addr); err != nil {
			return err
		}
	}
	if s.d.Buffer.Enabled && s.d.Buffer.NATSURL == "" {
		if err := check("buffer.embedded_addr", s.d.Buffer.EmbeddedAddr); err != nil {
			return err
		}
	}
	if s.d.Etcd.Embedded {
		for what, raw := range map[string]string{"etcd.client_url": s.d.Etcd.ClientURL, "etcd.peer_url": s.d.Etcd.PeerURL} {
			u, err := url.Parse(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if err := check(what, u.Host); err != nil {
				return err
			}
		}
	}
	for _, r := range s.d.Regions {
		for _, m := range r.Members {
			if err := check("member "+m.Name, net.JoinHostPort(m.Host, fmt.Sprint(m.Port))); err != nil {
				return err
			}
			if m.HasLink() {
				if err := check("member "+m.Name+" link", net.JoinHostPort(m.Host, fmt.Sprint(m.AdvertisePort))); err != nil {
					return err
				}
			}
			if m.MetricsPort != 0 {
				if err := check("member "+m.Name+" metrics", net.JoinHostPort(m.Host, fmt.Sprint(m.MetricsPort))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

type dataDirOwner struct {
	Cluster string    `json:"cluster"`
	Created time.Time `json:"created"`
}

// claimDataDir records which cluster the data dir belongs to, and refuses a
// data dir of another cluster.
func (s *Supervisor) claimDataDir() error {
	path := filepath.Join(s.d.DataDir, "cluster.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var o dataDirOwner
		if err := json.Unmarshal(b, &o); err != nil {
			return fmt.Errorf("data dir %s: %s is unreadable (%v); refusing to touch the directory", s.d.DataDir, path, err)
		}
		if o.Cluster != s.d.Cluster {
			return fmt.Errorf("data dir %s belongs to cluster %q, not %q; nothing changed: choose another --data-dir or cluster name", s.d.DataDir, o.Cluster, s.d.Cluster)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	entries, _ := os.ReadDir(s.d.DataDir)
	if len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty and was not created by holdfast; nothing changed: choose an empty or new directory", s.d.DataDir)
	}
	b, _ = json.Marshal(dataDirOwner{Cluster: s.d.Cluster, Created: time.Now().UTC()})
	return os.WriteFile(path, b, 0o644)
}

// writeConfig writes the resolved config the agents read.
func (s *Supervisor) writeConfig() error {
	b, err := s.d.MarshalCommented()
	if err != nil {
		return err
	}
	s.ConfigPath = filepath.Join(s.d.DataDir, "holdfast.yaml")
	tmp := s.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return os.Rename(tmp, s.ConfigPath)
}

func (s *Supervisor) pausedMarker() string { return filepath.Join(s.d.DataDir, "paused-by-up") }

func (s *Supervisor) resumeIfWePaused(ctx context.Context) error {
	if _, err := os.Stat(s.pausedMarker()); err != nil {
		return nil
	}
	if err := admin.SetPaused(ctx, s.st, false); err != nil {
		return err
	}
	return os.Remove(s.pausedMarker())
}

// waitPrimary waits until a member holds the primary region's leader key and
// reports itself a running primary.
func (s *Supervisor) waitPrimary(ctx context.Context) (cluster.Member, error) {
	snap, err := s.st.Snapshot(ctx)
	if err != nil {
		return cluster.Member{}, err
	}
	updates := s.st.Watch(ctx, snap.Revision)
	for {
		if l, ok := snap.Leaders[admin.PrimaryRegion(s.d, snap.Topology)]; ok {
			if m, ok := snap.Members[l.Member]; ok && m.Role == cluster.RolePrimary && m.State == cluster.StateRunning {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return cluster.Member{}, ctx.Err()
		case u, ok := <-updates:
			if !ok {
				return cluster.Member{}, ctx.Err()
			}
			snap.Apply(u)
		}
	}
}

func (s *Supervisor) printEndpoints(primary cluster.Member) {
	s.printf("")
	s.printf("holdfast: cluster %q is up; primary %s", s.d.Cluster, primary.Name)
	for _, r := range s.d.Regions {
		for _, m := range r.Members {
			metrics := ""
			if m.MetricsPort != 0 {
				metrics = fmt.Sprintf("  metrics http://%s:%d/metrics", m.Host, m.MetricsPort)
			}
			s.printf("  member %-10s postgresql://%s:%d  (region %s, zone %s)%s", m.Name, m.Host, m.ReachPort(), r.Name, m.Zone, metrics)
		}
	}
	if s.proxy != nil {
		if a := s.proxy.Addr("writer"); a != "" {
			s.printf("  proxy writer    postgresql://%s  (follows the primary; holds new connections during failover)", a)
		}
		if a := s.proxy.Addr("reader"); a != "" {
			s.printf("  proxy reader    postgresql://%s  (replicas of %s, least connections first)", a, s.d.PrimaryRegion)
		}
		if a := s.proxy.AdminAddr(); a != "" {
			s.printf("  proxy metrics   http://%s/metrics  (status: holdfast proxy status --config %s)", a, s.ConfigPath)
		}
		for _, r := range s.d.Regions {
			p, ok := s.regionProxies[r.Name]
			if !ok {
				continue
			}
			s.printf("  region %-8s proxy writer postgresql://%s, reader postgresql://%s (replicas of %s), metrics http://%s/metrics",
				r.Name, p.Addr("writer"), p.Addr("reader"), r.Name, p.AdminAddr())
		}
		s.printf("  proxy TLS       sslmode=require, or sslmode=verify-full sslrootcert=%s", s.d.Proxy.TLSCertFile)
	}
	if s.stack != nil && s.stack.Server != nil {
		a := s.stack.Server.Addr()
		s.printf("  todo api        http://%s/v1/todos  (OAuth2: . %s; curl -u $CLIENT_ID:$CLIENT_SECRET -d grant_type=client_credentials http://%s/oauth2/token)",
			a, filepath.Join(s.d.Postgres.SecretsDir, ClientSecretsEnv), a)
		if s.stack.Buffer != nil {
			s.printf("  write buffer    curl -d '{\"kind\":\"ingest\",\"key\":\"k1\",\"payload\":{\"guid\":\"<uuid>\"}}' -H 'Content-Type: application/json' http://%s/v1/writes", a)
			s.printf("                  (acknowledged once fsynced in JetStream at %s; committed exactly once; holdfast buffer status)", s.stack.Buffer.NATSURL())
		}
		s.printf("  api metrics     http://%s/metrics  (admin token: %s)", a, s.d.API.AdminTokenFile)
		if u := s.stack.DashboardURL(); u != "" {
			s.printf("  dashboard       %s  (load, drills, switchover; the link carries the admin token)", u)
		}
	}
	s.printf("  etcd            %v (metrics at %s/metrics)", s.d.Etcd.Endpoints, s.d.Etcd.ClientURL)
	s.printf("  credentials     %s (role %s), %s (superuser)", filepath.Join(s.d.Postgres.SecretsDir, config.AppSecrets), s.d.Postgres.AppUser, filepath.Join(s.d.Postgres.SecretsDir, config.AdminSecrets))
	if s.proxy != nil && s.proxy.Addr("writer") != "" {
		host, port, _ := net.SplitHostPort(s.proxy.Addr("writer"))
		s.printf("  connect         . %s; psql -h %s -p %s", filepath.Join(s.d.Postgres.SecretsDir, config.AppSecrets), host, port)
	} else {
		s.printf("  connect         . %s; psql -h %s -p %d", filepath.Join(s.d.Postgres.SecretsDir, config.AppSecrets), primary.Host, primary.Port)
	}
	s.printf("  status          holdfast status --config %s", s.ConfigPath)
	s.printf("  agent logs      %s", filepath.Join(s.d.DataDir, "logs"))
	s.printf("Press Ctrl-C to stop.")
}

func (s *Supervisor) printEvents(ctx context.Context) {
	evs, err := s.st.Events(ctx, 1)
	var after int64
	if err == nil && len(evs) > 0 {
		after = evs[len(evs)-1].Revision
	}
	for e := range s.st.WatchEvents(ctx, after) {
		who := e.Member
		if who == "" {
			who = "-"
		}
		s.printf("%s %-8s %-22s %s", e.Time.Local().Format("15:04:05.000"), who, e.Kind, e.Message)
	}
}

// Close pauses the cluster, stops the agents (primary first), then etcd.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stopCanaries != nil {
		s.stopCanaries()
	}
	// The buffer's committer applies through the proxy: it stops first.
	if s.stack != nil {
		s.stack.Close()
	}
	if s.proxy != nil {
		_ = s.proxy.Close()
	}
	for _, p := range s.regionProxies {
		_ = p.Close()
	}
	if s.st != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := admin.SetPaused(pctx, s.st, true); err == nil {
			_ = os.WriteFile(s.pausedMarker(), []byte("paused by holdfast up on shutdown\n"), 0o644)
		}
		cancel()
	}
	// A partition in progress would stop the primary from handing its
	// last WAL to the replicas.
	s.healAll()
	primary := ""
	if s.st != nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if snap, err := s.st.Snapshot(sctx); err == nil {
			if l, ok := snap.Leaders[admin.PrimaryRegion(s.d, snap.Topology)]; ok {
				primary = l.Member
			}
		}
		cancel()
	}
	if primary != "" {
		s.stopAgent(primary)
	}
	var wg sync.WaitGroup
	for _, name := range s.d.MemberNames() {
		wg.Add(1)
		go func() { defer wg.Done(); s.stopAgent(name) }()
	}
	wg.Wait()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.closeLinks()
	if s.st != nil {
		_ = s.st.Close()
	}
	s.closeEtcd()
	return nil
}

func (s *Supervisor) closeEtcd() {
	if s.etcd != nil {
		s.etcd.Close()
		s.etcd = nil
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/proxy"
)

// hfCluster is a three-member holdfast cluster run by `holdfast up` as a
// child process, without its proxy: the proxies under test run on their own
// (`holdfast proxy`), so that each one's memory can be read from /proc.
type hfCluster struct {
	bin     string // the holdfast binary
	dir     string // the run's temporary directory
	cfgPath string
	cfg     config.Config // resolved
	up      *child

	admin, app config.Credentials
}

// buildHoldfast builds cmd/holdfast into dir.
func buildHoldfast(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "holdfast")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/holdfast")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build holdfast (run from the repository root): %w", err)
	}
	return out, nil
}

// clusterConfig is holdfast's default deployment on free ports, with the data
// in dir, no proxy, and max_connections raised so that the direct runs and
// one pooler's pool fit.
func clusterConfig(dir string, maxConnections int) (config.Config, error) {
	cfg := config.Default()
	cfg.Cluster = "proxybench"
	cfg.DataDir = filepath.Join(dir, "cluster")
	ports := make([]int, 2+2*len(cfg.Regions[0].Members))
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return cfg, err
		}
		ports[i] = p
	}
	cfg.Etcd.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	cfg.Etcd.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}
	for i := range cfg.Regions[0].Members {
		cfg.Regions[0].Members[i].Port = ports[2+2*i]
		cfg.Regions[0].Members[i].MetricsPort = ports[3+2*i]
	}
	cfg.Proxy.Enabled = false
	cfg.Postgres.Parameters = map[string]string{"max_connections": strconv.Itoa(maxConnections)}
	return cfg, nil
}

// writeConfig writes cfg as YAML and has `holdfast config check` validate it.
func writeConfig(ctx context.Context, bin string, cfg config.Config, path string) error {
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bin, "config", "check", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("holdfast config check %s: %v: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

func startCluster(ctx context.Context, bin, dir string, maxConnections int) (*hfCluster, error) {
	cfg, err := clusterConfig(dir, maxConnections)
	if err != nil {
		return nil, err
	}
	return startClusterWith(ctx, bin, dir, cfg)
}

// startClusterWith runs `holdfast up` with cfg (proxy off) and waits until
// it is healthy.
func startClusterWith(ctx context.Context, bin, dir string, cfg config.Config) (*hfCluster, error) {
	var err error
	h := &hfCluster{bin: bin, dir: dir, cfgPath: filepath.Join(dir, "holdfast.yml")}
	if err := writeConfig(ctx, bin, cfg, h.cfgPath); err != nil {
		return nil, err
	}
	cfg.Resolve()
	h.cfg = cfg
	cmd := exec.Command(bin, "up", "--config", h.cfgPath, "--quiet")
	cmd.Dir = dir
	if h.up, err = startChild("holdfast up", cmd, filepath.Join(dir, "logs", "holdfast-up.log")); err != nil {
		return nil, err
	}
	if _, err := h.waitHealthy(ctx, 3*time.Minute); err != nil {
		return h, err
	}
	if h.admin, err = config.ReadCredentials(filepath.Join(cfg.Postgres.SecretsDir, config.AdminSecrets)); err != nil {
		return h, err
	}
	if h.app, err = config.ReadCredentials(filepath.Join(cfg.Postgres.SecretsDir, config.AppSecrets)); err != nil {
		return h, err
	}
	// `up` writes the proxy's users file only when it runs the proxy
	// itself; the standalone proxies need it too.
	if err := proxy.EnsureUsersFile(cfg.Proxy.UsersFile, h.app, h.admin); err != nil {
		return h, err
	}
	return h, nil
}

// status is `holdfast status --json`.
func (h *hfCluster) status(ctx context.Context) (admin.ClusterStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, h.bin, "status", "--json", "--config", h.cfgPath)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return admin.ClusterStatus{}, fmt.Errorf("holdfast status: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var s admin.ClusterStatus
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("holdfast status: %w", err)
	}
	return s, nil
}

// primary returns the member that holds the leader key and runs as primary.
func primaryOf(s admin.ClusterStatus) (admin.MemberStatus, bool) {
	for _, m := range s.Members {
		if m.Role == cluster.RolePrimary && m.Leader && m.State == cluster.StateRunning {
			return m, true
		}
	}
	return admin.MemberStatus{}, false
}

// healthy: a running primary, every member running and one synchronous
// replica, so that the next measurement starts from a whole cluster.
func healthy(s admin.ClusterStatus) (admin.MemberStatus, string) {
	p, ok := primaryOf(s)
	if !ok {
		return p, "no primary"
	}
	sync := 0
	for _, m := range s.Members {
		if m.State != cluster.StateRunning {
			return p, fmt.Sprintf("%s is %s", m.Name, m.State)
		}
		if m.Role == cluster.RoleReplica && m.Sync {
			sync++
		}
	}
	if sync == 0 {
		return p, "no synchronous replica yet"
	}
	return p, ""
}

func (h *hfCluster) waitHealthy(ctx context.Context, limit time.Duration) (admin.MemberStatus, error) {
	deadline := time.Now().Add(limit)
	why := "no status yet"
	for {
		if s, err := h.status(ctx); err == nil {
			p, reason := healthy(s)
			if reason == "" {
				return p, nil
			}
			why = reason
		} else {
			why = err.Error()
		}
		if h.up.exited() {
			return admin.MemberStatus{}, fmt.Errorf("holdfast up exited:\n%s", h.up.tail(20))
		}
		if time.Now().After(deadline) {
			return admin.MemberStatus{}, fmt.Errorf("cluster not healthy after %s: %s (logs in %s)", limit, why, h.dir)
		}
		select {
		case <-ctx.Done():
			return admin.MemberStatus{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// scramSecret is the app role's SCRAM verifier as PostgreSQL stores it,
// which PgBouncer needs both to check clients and to log in to PostgreSQL
// with the keys the client proved.
func (h *hfCluster) scramSecret(ctx context.Context, p admin.MemberStatus) (string, error) {
	conn, err := pgconn.Connect(ctx, dsn(p.Host, p.Port, h.admin.User, h.admin.Password, "postgres"))
	if err != nil {
		return "", fmt.Errorf("connect as %s: %w", h.admin.User, err)
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", [][]byte{[]byte(h.app.User)}, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0][0]) == 0 {
		return "", fmt.Errorf("role %s has no password", h.app.User)
	}
	return string(res.Rows[0][0]), nil
}

// stop stops the cluster the way Ctrl-C stops `holdfast up`.
func (h *hfCluster) stop() {
	if h == nil || h.up == nil {
		return
	}
	h.up.stop(syscall.SIGTERM, time.Minute)
}

func dsn(host string, port int, user, password, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=10", host, port, user, password, db)
}

// ping opens a connection and runs SELECT 1, retrying until limit: a pooler
// that has just started, or is waiting for a primary, is ready once it
// answers.
func ping(ctx context.Context, host string, port int, c config.Credentials, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := pgconn.Connect(cctx, dsn(host, port, c.User, c.Password, c.Database))
		if err == nil {
			_, err = conn.Exec(cctx, "SELECT 1").ReadAll()
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s:%d not answering: %w", host, port, errors.Join(last, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

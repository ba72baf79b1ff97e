package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Targets: where pgbench connects.
const (
	targetDirect          = "direct"
	targetHoldfastSession = "holdfast-session"
	targetHoldfastTx      = "holdfast-transaction"
	targetBouncerSession  = "pgbouncer-session"
	targetBouncerTx       = "pgbouncer-transaction"
)

var allTargets = []string{targetDirect, targetHoldfastSession, targetHoldfastTx, targetBouncerSession, targetBouncerTx}

const pgbouncerBin = "/usr/sbin/pgbouncer"

// poolMode is the pool mode of a pooler target.
func poolMode(target string) string {
	if strings.HasSuffix(target, "-transaction") {
		return "transaction"
	}
	return "session"
}

// pooler is a running holdfast proxy or PgBouncer, started for one
// measurement and stopped after it, so that only one pool holds server
// connections at a time.
type pooler struct {
	target string
	port   int
	admin  int // holdfast's admin port (/metrics, /status); 0 for PgBouncer
	proc   *child
}

func (p *pooler) stop() {
	if p == nil {
		return
	}
	// Both stop at once on SIGTERM (PgBouncer: immediate shutdown).
	p.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// startPooler starts the pooler of target (nil for direct) and waits until
// it answers a query. maxClients is how many clients it must accept.
func (b *bench) startPooler(ctx context.Context, target string, maxClients int) (*pooler, error) {
	var p *pooler
	var err error
	switch target {
	case targetDirect:
		return nil, nil
	case targetHoldfastSession, targetHoldfastTx:
		p, err = b.startHoldfastProxy(ctx, target, maxClients)
	case targetBouncerSession, targetBouncerTx:
		p, err = b.startPgBouncer(ctx, target, maxClients)
	default:
		return nil, fmt.Errorf("unknown target %q", target)
	}
	if err != nil {
		return nil, err
	}
	if err := ping(ctx, "127.0.0.1", p.port, b.cluster.app, 30*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w\n%s", target, err, p.proc.tail(20))
	}
	return p, nil
}

// endpoint returns the port pgbench uses for target: the pooler's, or the
// current primary's.
func (b *bench) endpoint(ctx context.Context, p *pooler) (int, error) {
	if p != nil {
		return p.port, nil
	}
	s, err := b.cluster.status(ctx)
	if err != nil {
		return 0, err
	}
	m, ok := primaryOf(s)
	if !ok {
		return 0, fmt.Errorf("no primary")
	}
	return m.Port, nil
}

// startHoldfastProxy runs `holdfast proxy` with the cluster's config and
// its own proxy section: pool mode and size, writer and reader ports.
func (b *bench) startHoldfastProxy(ctx context.Context, target string, maxClients int) (*pooler, error) {
	cfg := b.cluster.cfg
	writer, err := freePort()
	if err != nil {
		return nil, err
	}
	reader, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.Proxy.Enabled = true
	cfg.Proxy.WriterAddr = fmt.Sprintf("127.0.0.1:%d", writer)
	cfg.Proxy.ReaderAddr = fmt.Sprintf("127.0.0.1:%d", reader)
	// Not the default 6434: a running `holdfast up` may hold it.
	cfg.Proxy.AdminAddr = fmt.Sprintf("127.0.0.1:%d", admin)
	cfg.Proxy.PoolMode = poolMode(target)
	cfg.Proxy.PoolSize = b.poolSize
	cfg.Proxy.ResolveCommits = b.opts.resolve
	cfg.Proxy.MaxClients = max(cfg.Proxy.MaxClients, maxClients+100)
	b.seq++
	path := filepath.Join(b.dir, fmt.Sprintf("%s-%d.yml", target, b.seq))
	if err := writeConfig(ctx, b.cluster.bin, cfg, path); err != nil {
		return nil, err
	}
	cmd := exec.Command(b.cluster.bin, "proxy", "--config", path)
	cmd.Dir = b.dir
	proc, err := startChild(target, cmd, filepath.Join(b.dir, "logs", fmt.Sprintf("%s-%d.log", target, b.seq)))
	if err != nil {
		return nil, err
	}
	return &pooler{target: target, port: writer, admin: admin, proc: proc}, nil
}

// startPgBouncer writes an ini pointing at the current primary, with the
// same pool size, and runs PgBouncer as the postgres OS user (it refuses
// root). Clients log in with SCRAM-SHA-256 against the app role's verifier
// copied from pg_authid; PgBouncer logs in to PostgreSQL with the keys the
// client proved, so it never holds the password.
func (b *bench) startPgBouncer(ctx context.Context, target string, maxClients int) (*pooler, error) {
	if _, err := os.Stat(pgbouncerBin); err != nil {
		return nil, fmt.Errorf("%s is missing: run bench/proxy.sh, which installs it", pgbouncerBin)
	}
	s, err := b.cluster.status(ctx)
	if err != nil {
		return nil, err
	}
	primary, ok := primaryOf(s)
	if !ok {
		return nil, fmt.Errorf("pgbouncer: no primary to point at")
	}
	secret, err := b.cluster.scramSecret(ctx, primary)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b.seq++
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", target, b.seq))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	app := b.cluster.app
	files := map[string]string{
		"userlist.txt": fmt.Sprintf("%q %q\n", app.User, secret),
		"pgbouncer.ini": strings.Join([]string{
			"[databases]",
			fmt.Sprintf("%s = host=%s port=%d dbname=%s", app.Database, primary.Host, primary.Port, app.Database),
			"",
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			"listen_port = " + strconv.Itoa(port),
			"unix_socket_dir =",
			"auth_type = scram-sha-256",
			"auth_file = " + filepath.Join(dir, "userlist.txt"),
			"pool_mode = " + poolMode(target),
			"default_pool_size = " + strconv.Itoa(b.poolSize),
			"min_pool_size = 0",
			"reserve_pool_size = 0",
			"max_client_conn = " + strconv.Itoa(maxClients+100),
			"server_tls_sslmode = disable",
			"client_tls_sslmode = disable",
			"ignore_startup_parameters = extra_float_digits",
			// As quiet as holdfast's proxy, which logs no connection.
			"log_connections = 0",
			"log_disconnections = 0",
			"",
		}, "\n"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(pgbouncerBin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		u, err := lookupOSUser("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgbouncer refuses to run as root and runs as postgres: %w", err)
		}
		for _, p := range []string{dir, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.ini")} {
			if err := os.Chown(p, u.uid, u.gid); err != nil {
				return nil, err
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential()}
	}
	proc, err := startChild(target, cmd, filepath.Join(b.dir, "logs", fmt.Sprintf("%s-%d.log", target, b.seq)))
	if err != nil {
		return nil, err
	}
	return &pooler{target: target, port: port, proc: proc}, nil
}

// fileLimit is the soft RLIMIT_NOFILE of pid, from /proc/PID/limits.
func fileLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); len(f) > 0 {
				return f[0]
			}
		}
	}
	return "?"
}

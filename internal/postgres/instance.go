package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Instance is one local PostgreSQL instance. Create it with New.
type Instance struct {
	cfg Config
	log *slog.Logger

	// asRoot is true when the agent runs as root and must drop to OSUser for
	// every PostgreSQL binary.
	asRoot bool
	uid    int
	gid    int
	groups []int
	home   string

	// opMu serialises operations that change what runs on or is in DataDir
	// (launching, initdb, base backup, rewind, removal), so that for example
	// a Start cannot launch a server on a data directory being rewound. Stop
	// does not take it, so it can interrupt a Start waiting for readiness.
	opMu sync.Mutex

	mu       sync.Mutex
	cur      *proc     // current or last postmaster; nil if none known
	settings *Settings // last Settings written by WriteConfig

	statusMu   sync.Mutex
	statusConn *pgx.Conn // cached connection for Status
}

// New validates cfg and resolves the OS user. It does not touch the data
// directory, but it does check that OSUser can reach DataDir and ConfDir so a
// misplaced directory is reported at agent start.
func New(cfg Config, log *slog.Logger) (*Instance, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	cfg.DataDir = filepath.Clean(cfg.DataDir)
	cfg.ConfDir = filepath.Clean(cfg.ConfDir)
	cfg.BinDir = filepath.Clean(cfg.BinDir)
	if log == nil {
		log = slog.Default()
	}
	i := &Instance{cfg: cfg, log: log.With("component", "postgres", "member", cfg.Name)}

	if os.Geteuid() == 0 {
		u, err := user.Lookup(cfg.OSUser)
		if err != nil {
			return nil, fmt.Errorf("look up OS user %q (PostgreSQL refuses to run as root, so its binaries run as this user): %w", cfg.OSUser, err)
		}
		i.asRoot = true
		if i.uid, err = strconv.Atoi(u.Uid); err != nil {
			return nil, fmt.Errorf("OS user %q: uid %q: %w", cfg.OSUser, u.Uid, err)
		}
		if i.gid, err = strconv.Atoi(u.Gid); err != nil {
			return nil, fmt.Errorf("OS user %q: gid %q: %w", cfg.OSUser, u.Gid, err)
		}
		if i.uid == 0 {
			return nil, fmt.Errorf("OS user %q has uid 0: PostgreSQL refuses to run as root", cfg.OSUser)
		}
		gids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("OS user %q: groups: %w", cfg.OSUser, err)
		}
		for _, g := range gids {
			if n, err := strconv.Atoi(g); err == nil {
				i.groups = append(i.groups, n)
			}
		}
		i.home = u.HomeDir
	} else {
		i.uid, i.gid = os.Geteuid(), os.Getegid()
		i.home = os.Getenv("HOME")
	}
	for _, p := range []string{cfg.BinDir, cfg.DataDir, cfg.ConfDir} {
		if err := i.checkReachable(p); err != nil {
			return nil, err
		}
	}
	return i, nil
}

// Config returns the configuration with defaults applied.
func (i *Instance) Config() Config { return i.cfg }

// ConfigFile is the live postgresql.conf.
func (i *Instance) ConfigFile() string { return filepath.Join(i.cfg.ConfDir, "postgresql.conf") }

// LogFile is where the server's stdout and stderr go.
func (i *Instance) LogFile() string { return filepath.Join(i.cfg.ConfDir, "postgresql.log") }

// SocketDir is the unix socket directory (unix_socket_directories).
func (i *Instance) SocketDir() string { return filepath.Join(i.cfg.ConfDir, "run") }

// IsInitialized reports whether DataDir holds a cluster (PG_VERSION exists).
func (i *Instance) IsInitialized() bool {
	_, err := os.Stat(filepath.Join(i.cfg.DataDir, "PG_VERSION"))
	return err == nil
}

// checkReachable verifies that OSUser can traverse every existing ancestor
// of path (and path itself if it exists). Without this, a data dir under
// /root (mode 0700) makes initdb fail with "could not change permissions"
// or the server with "could not open file", neither naming the culprit.
func (i *Instance) checkReachable(path string) error {
	if !i.asRoot {
		return nil
	}
	path = filepath.Clean(path)
	var chain []string
	for p := path; ; p = filepath.Dir(p) {
		chain = append(chain, p)
		if p == "/" {
			break
		}
	}
	for k := len(chain) - 1; k >= 0; k-- {
		dir := chain[k]
		fi, err := os.Stat(dir)
		if os.IsNotExist(err) {
			return nil // the rest will be created by us with a traversable mode
		}
		if err != nil {
			return fmt.Errorf("check %s: %w", dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (on the way to %s)", dir, path)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		if !i.canExec(fi.Mode().Perm(), int(st.Uid), int(st.Gid)) {
			return fmt.Errorf("%s is mode %04o owned by uid %d: the %s user cannot reach %s; choose a directory elsewhere or chmod o+x %s",
				dir, fi.Mode().Perm(), st.Uid, i.cfg.OSUser, path, dir)
		}
	}
	return nil
}

// canExec applies the classic owner/group/other permission check for the
// search (x) bit as OSUser.
func (i *Instance) canExec(perm os.FileMode, uid, gid int) bool {
	if uid == i.uid {
		return perm&0o100 != 0
	}
	if gid == i.gid {
		return perm&0o010 != 0
	}
	for _, g := range i.groups {
		if g == gid {
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// mkdirOwned creates dir (and any missing ancestors, mode 0755 so OSUser can
// traverse them regardless of umask) and makes dir itself mode perm and owned
// by OSUser.
func (i *Instance) mkdirOwned(dir string, perm os.FileMode) error {
	if err := i.checkReachable(dir); err != nil {
		return err
	}
	if err := mkdirAllTraversable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, perm); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return i.chown(dir)
}

func mkdirAllTraversable(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := mkdirAllTraversable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// Explicit chmod: the umask may have removed o+x.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// chown gives path to OSUser when running as root.
func (i *Instance) chown(path string) error {
	if !i.asRoot {
		return nil
	}
	if err := os.Lchown(path, i.uid, i.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, i.cfg.OSUser, err)
	}
	return nil
}

// ensureConfDir creates ConfDir (0700) and ConfDir/run (0700), both owned by
// OSUser. The socket directory's mode is what makes "local all all trust" in
// pg_hba.conf safe: only OSUser and root can reach the socket.
func (i *Instance) ensureConfDir() error {
	if err := i.mkdirOwned(i.cfg.ConfDir, 0o700); err != nil {
		return fmt.Errorf("conf dir: %w", err)
	}
	if err := i.mkdirOwned(i.SocketDir(), 0o700); err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	return nil
}

// withTimeout bounds ctx by d unless it already has an earlier deadline.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

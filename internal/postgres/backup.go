package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// BaseBackup clones DataDir from the running member src with pg_basebackup
// (WAL streamed alongside, fast checkpoint on the source). DataDir must be
// absent or empty: call RemoveData first. src gives host and port; empty
// User and Password default to the replication role. The password is passed
// in PGPASSWORD, never on the command line. On failure the partial copy is
// removed, so a later start cannot run on half a data directory.
func (i *Instance) BaseBackup(ctx context.Context, src ConnInfo) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.Running() {
		return fmt.Errorf("basebackup: %w", ErrRunning)
	}
	if err := i.checkEmptyDataDir(); err != nil {
		return fmt.Errorf("basebackup: %w", err)
	}
	if err := i.mkdirOwned(i.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("basebackup: data dir: %w", err)
	}
	if src.User == "" {
		src.User = i.cfg.ReplUser
	}
	if src.Password == "" && src.User == i.cfg.ReplUser {
		src.Password = i.cfg.ReplPassword
	}
	if src.ConnectTimeout == 0 {
		src.ConnectTimeout = 10 * time.Second
	}
	password := src.Password
	src.Password = ""
	// AppName is deliberately left to pg_basebackup's default: with the
	// member name, its WAL stream could count as a synchronous standby.
	src.AppName = ""

	i.log.Info("pg_basebackup", "source", fmt.Sprintf("%s:%d", src.Host, src.Port), "data_dir", i.cfg.DataDir)
	start := time.Now()
	_, err := i.runTool(ctx, "pg_basebackup", []string{"PGPASSWORD=" + password},
		"-D", i.cfg.DataDir,
		"-d", src.String(),
		"-X", "stream",
		"--checkpoint=fast",
		"--no-password",
	)
	if err != nil {
		if rerr := i.removeDataContents(); rerr != nil {
			i.log.Error("could not remove partial base backup", "err", rerr)
		}
		return fmt.Errorf("basebackup from %s:%d: %w", src.Host, src.Port, err)
	}
	if err := i.writeDataDirStub(); err != nil {
		return fmt.Errorf("basebackup: %w", err)
	}
	i.log.Info("pg_basebackup done", "took", time.Since(start))
	return nil
}

// checkEmptyDataDir accepts an absent or empty DataDir.
func (i *Instance) checkEmptyDataDir() error {
	ents, err := os.ReadDir(i.cfg.DataDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read data dir: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("data dir %s is not empty (call RemoveData first)", i.cfg.DataDir)
	}
	return nil
}

// RemoveData deletes everything inside DataDir, keeping the directory.
// It refuses while a postmaster runs, and refuses directories that do not
// look like a data directory this package manages (not owned by OSUser, or
// with group-write or any "other" permission), so that a misconfigured
// DataDir such as /home cannot be wiped.
func (i *Instance) RemoveData() error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.Running() {
		return fmt.Errorf("remove data: %w", ErrRunning)
	}
	return i.removeDataContents()
}

func (i *Instance) removeDataContents() error {
	dir := filepath.Clean(i.cfg.DataDir)
	if dir == "" || dir == "/" || dir == "." || !filepath.IsAbs(dir) {
		return fmt.Errorf("remove data: refusing to remove %q", i.cfg.DataDir)
	}
	fi, err := os.Lstat(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove data: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove data: %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != i.uid {
		return fmt.Errorf("remove data: refusing to empty %s: owned by uid %d, not the %s user", dir, st.Uid, i.cfg.OSUser)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		return fmt.Errorf("remove data: refusing to empty %s: mode %04o is not a PostgreSQL data directory's (0700 or 0750)", dir, fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("remove data: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove data: %w", err)
	}
	i.log.Info("removed data directory contents", "data_dir", dir)
	return nil
}

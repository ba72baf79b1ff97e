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
// absent or empty: to replace a data directory, use Recopy. src gives host
// and port; empty User and Password default to the replication role. The
// password is passed in PGPASSWORD, never on the command line. On failure
// the partial copy is removed, so a later start cannot run on half a data
// directory.
func (i *Instance) BaseBackup(ctx context.Context, src ConnInfo) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.Running() {
		return fmt.Errorf("basebackup: %w", ErrRunning)
	}
	if err := i.checkEmptyDataDir(); err != nil {
		return fmt.Errorf("basebackup: %w", err)
	}
	if err := i.baseBackupInto(ctx, i.cfg.DataDir, src); err != nil {
		if rerr := i.removeDataContents(); rerr != nil {
			i.log.Error("could not remove partial base backup", "err", rerr)
		}
		return err
	}
	return i.writeDataDirStub()
}

// Recopy replaces DataDir with a fresh copy of the running member src
// (a data directory pg_rewind could not repair, or whose WAL left the
// upstream's history). The copy is made beside DataDir and swapped in only
// once complete: until then, and for good if the copy fails (the source
// dies halfway, say), the current data directory stays as it was. A crash
// during the swap is finished by RecoverRecopy. It needs room for a second
// copy on DataDir's file system.
func (i *Instance) Recopy(ctx context.Context, src ConnInfo) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.Running() {
		return fmt.Errorf("recopy: %w", ErrRunning)
	}
	if err := i.finishSwap(); err != nil {
		return fmt.Errorf("recopy: %w", err)
	}
	staging, copied := i.cfg.DataDir+stagingSuffix, i.cfg.DataDir+copiedSuffix
	if err := i.baseBackupInto(ctx, staging, src); err != nil {
		if rerr := os.RemoveAll(staging); rerr != nil {
			i.log.Error("could not remove partial copy", "dir", staging, "err", rerr)
		}
		return fmt.Errorf("recopy (the data directory is unchanged): %w", err)
	}
	// Complete: the rename marks it so, whatever happens next.
	if err := os.Rename(staging, copied); err != nil {
		return fmt.Errorf("recopy: %w", err)
	}
	if err := i.finishSwap(); err != nil {
		return fmt.Errorf("recopy: %w", err)
	}
	return i.writeDataDirStub()
}

// The directories beside DataDir that Recopy uses: a copy in progress, a
// complete copy not swapped in yet, and the replaced data being removed.
const (
	stagingSuffix  = ".copying"
	copiedSuffix   = ".copied"
	replacedSuffix = ".replaced"
)

// RecoverRecopy finishes a Recopy that a crash interrupted (see
// finishSwap). The member's agent calls it before anything reads DataDir.
func (i *Instance) RecoverRecopy() error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if err := i.finishSwap(); err != nil {
		return fmt.Errorf("finish an interrupted copy of %s: %w", i.cfg.DataDir, err)
	}
	return nil
}

// finishSwap completes a Recopy that a crash interrupted: a complete copy
// replaces DataDir; a partial one and replaced data are removed.
func (i *Instance) finishSwap() error {
	dd := i.cfg.DataDir
	copied, replaced := dd+copiedSuffix, dd+replacedSuffix
	if _, err := os.Lstat(copied); err == nil {
		if _, err := os.Lstat(dd); err == nil {
			if err := os.RemoveAll(replaced); err != nil {
				return err
			}
			if err := os.Rename(dd, replaced); err != nil {
				return err
			}
		}
		if err := os.Rename(copied, dd); err != nil {
			return err
		}
		i.log.Info("swapped in a fresh copy of the data directory", "data_dir", dd)
	} else if !os.IsNotExist(err) {
		return err
	}
	for _, d := range []string{replaced, dd + stagingSuffix} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// baseBackupInto runs pg_basebackup from src into dir, an absent or empty
// directory.
func (i *Instance) baseBackupInto(ctx context.Context, dir string, src ConnInfo) error {
	if err := i.mkdirOwned(dir, 0o700); err != nil {
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

	i.log.Info("pg_basebackup", "source", fmt.Sprintf("%s:%d", src.Host, src.Port), "data_dir", dir)
	start := time.Now()
	_, err := i.runTool(ctx, "pg_basebackup", []string{"PGPASSWORD=" + password},
		"-D", dir,
		"-d", src.String(),
		"-X", "stream",
		"--checkpoint=fast",
		"--no-password",
	)
	if err != nil {
		return fmt.Errorf("basebackup from %s:%d: %w", src.Host, src.Port, err)
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

package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr is shared by the server and the tools: own process group (a
// terminal ^C aimed at the agent must not reach PostgreSQL, and the whole
// group can be killed at once), credentials of OSUser when root, and a
// parent-death signal so nothing outlives a dead agent.
func (i *Instance) sysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if i.asRoot {
		groups := make([]uint32, 0, len(i.groups))
		for _, g := range i.groups {
			groups = append(groups, uint32(g))
		}
		// Go applies Pdeathsig after switching credentials, which matters:
		// the kernel clears the parent-death signal on a credential change.
		a.Credential = &syscall.Credential{Uid: uint32(i.uid), Gid: uint32(i.gid), Groups: groups}
	}
	return a
}

// env is the environment of every PostgreSQL binary: the agent's own, minus
// PG* variables (a stray PGHOST or PGPASSWORD in the agent's environment must
// not redirect a tool) and locale variables (tools' messages are parsed, so
// they must be in English), plus extra.
func (i *Instance) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if i.home != "" {
		env = append(env, "HOME="+i.home)
	}
	if os.Getenv("PATH") == "" {
		env = append(env, "PATH=/usr/bin:/bin")
	}
	return append(env, extra...)
}

func (i *Instance) bin(name string) string { return filepath.Join(i.cfg.BinDir, name) }

// runTool runs a short-lived PostgreSQL binary as OSUser and returns its
// combined output. Cancelling ctx kills the tool's whole process group:
// pg_basebackup forks a WAL-streaming child that would otherwise keep
// writing into a directory the caller is about to delete.
func (i *Instance) runTool(ctx context.Context, name string, extraEnv []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, i.bin(name), args...)
	cmd.Env = i.env(extraEnv...)
	// The agent's cwd may be unreachable for OSUser (e.g. /root), and initdb
	// and pg_rewind fail with "could not identify current directory".
	cmd.Dir = "/"
	cmd.SysProcAttr = i.sysProcAttr(syscall.SIGKILL)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	// The parent-death signal is tied to the forking OS thread, not the
	// process: keep this goroutine on one thread until the tool exits.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	i.log.Debug("running", "cmd", name, "args", args)
	start := time.Now()
	err := cmd.Run()
	i.log.Debug("finished", "cmd", name, "took", time.Since(start), "err", err)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.Bytes(), fmt.Errorf("%s: %w: %s", name, err, tail(out.Bytes(), 15))
	}
	return out.Bytes(), nil
}

// tail returns the last n non-empty lines of b, joined with " | " so that
// they fit in one log line or error message.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var keep []string
	for k := len(lines) - 1; k >= 0 && len(keep) < n; k-- {
		if l := strings.TrimSpace(lines[k]); l != "" {
			keep = append(keep, l)
		}
	}
	for a, z := 0, len(keep)-1; a < z; a, z = a+1, z-1 {
		keep[a], keep[z] = keep[z], keep[a]
	}
	if len(keep) == 0 {
		return "(no output)"
	}
	return strings.Join(keep, " | ")
}

// writeFileAtomic replaces path with data (temp file, fsync, rename, fsync
// dir) so a crash never leaves PostgreSQL a truncated config file, and gives
// it to OSUser.
func (i *Instance) writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := i.chown(tmp); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

package postgres

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// InitDB creates a new cluster in DataDir (which must be absent or empty)
// with the superuser SuperUser/SuperPassword, trust over the unix socket and
// SCRAM over TCP. The replication role can only be created once the server
// runs: call EnsureReplicationRole after Start.
func (i *Instance) InitDB(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.IsInitialized() {
		return fmt.Errorf("initdb %s: already initialized", i.cfg.DataDir)
	}
	if err := i.checkEmptyDataDir(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := i.ensureConfDir(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := i.mkdirOwned(i.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("initdb: data dir: %w", err)
	}

	// The password goes through a file, never the command line, where any
	// local user could read it in ps output.
	pw, err := os.CreateTemp(i.cfg.ConfDir, ".initdb-pw-*")
	if err != nil {
		return fmt.Errorf("initdb: password file: %w", err)
	}
	defer os.Remove(pw.Name())
	_, werr := pw.WriteString(i.cfg.SuperPassword + "\n")
	cerr := pw.Close()
	if werr != nil || cerr != nil {
		return fmt.Errorf("initdb: password file: %v %v", werr, cerr)
	}
	if err := os.Chmod(pw.Name(), 0o600); err != nil {
		return fmt.Errorf("initdb: password file: %w", err)
	}
	if err := i.chown(pw.Name()); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}

	args := []string{
		"-D", i.cfg.DataDir,
		"-U", i.cfg.SuperUser,
		"--pwfile=" + pw.Name(),
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--encoding=UTF8",
		"--no-instructions",
	}
	i.log.Info("initdb", "data_dir", i.cfg.DataDir)
	out, err := i.runTool(ctx, "initdb", nil, append(args, "--locale=C.UTF-8")...)
	if err != nil && strings.Contains(string(out), "locale") && ctx.Err() == nil {
		// A libc without C.UTF-8: plain C sorts the same way (by code point).
		i.log.Warn("initdb with C.UTF-8 failed, retrying with locale C", "err", err)
		if rerr := i.removeDataContents(); rerr != nil {
			return fmt.Errorf("initdb: %w", rerr)
		}
		_, err = i.runTool(ctx, "initdb", nil, append(args, "--locale=C")...)
	}
	if err != nil {
		return fmt.Errorf("initdb %s: %w", i.cfg.DataDir, err)
	}
	if err := i.writeDataDirStub(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return nil
}

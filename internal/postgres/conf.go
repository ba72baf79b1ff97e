package postgres

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Settings are the per-role parts of the configuration, chosen by the agent.
type Settings struct {
	// Standby writes DataDir/standby.signal; false removes it. Writing false
	// for a member that is not the leader would let it start as a primary on
	// its next restart.
	Standby bool
	// PrimaryConnInfo is the upstream of a standby (nil: none, e.g. a standby
	// waiting for a leader). AppName is always replaced by the member name,
	// because synchronous_standby_names matches it; empty User and Password
	// default to the replication role.
	PrimaryConnInfo *ConnInfo
	// PrimarySlot is primary_slot_name.
	PrimarySlot string
	// SyncStandbyNames is synchronous_standby_names verbatim, e.g. the result
	// of SyncStandbyNamesAny. Empty disables synchronous replication.
	SyncStandbyNames string
	// SyncCommit is synchronous_commit; empty means "on".
	SyncCommit string
}

// SyncStandbyNamesAny builds a quorum synchronous_standby_names value,
// `ANY n ("a","b")`. Names are double-quoted (embedded quotes doubled) and
// sorted: order does not matter for ANY, and a stable string avoids
// needless rewrites and reloads. n is clamped to [1, len(names)], because
// asking for more synchronous standbys than exist would block every commit.
// It returns "" when names is empty.
func SyncStandbyNamesAny(n int, names []string) string {
	if len(names) == 0 {
		return ""
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	n = max(1, min(n, len(sorted)))
	quoted := make([]string, len(sorted))
	for k, s := range sorted {
		quoted[k] = `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return fmt.Sprintf("ANY %d (%s)", n, strings.Join(quoted, ","))
}

// renderConfig returns postgresql.conf and pg_hba.conf for s.
func (i *Instance) renderConfig(s Settings) (conf, hba []byte) {
	c := i.cfg
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(v)) }
	b.WriteString("# Written by holdfast; changes are overwritten. Extra settings belong in\n# the holdfast configuration (postgres parameters).\n\n")

	// Files. data_directory is not set: the agent passes -D.
	set("hba_file", filepath.Join(c.ConfDir, "pg_hba.conf"))
	set("ident_file", filepath.Join(c.ConfDir, "pg_ident.conf"))

	// Connections.
	set("listen_addresses", c.ListenAddr)
	set("port", strconv.Itoa(c.Port))
	set("unix_socket_directories", i.SocketDir())
	set("unix_socket_permissions", "0700")
	set("max_connections", "100")
	set("password_encryption", "scram-sha-256")
	set("cluster_name", c.Name)

	// Replication. wal_log_hints lets pg_rewind work without data checksums.
	set("wal_level", "replica")
	set("hot_standby", "on")
	set("wal_log_hints", "on")
	set("max_wal_senders", "10")
	set("max_replication_slots", "10")
	set("wal_keep_size", "256MB")
	// Every member has a slot on the primary, also those that stream from
	// a standby leader in another region (the leader can change): bound
	// what an unused slot may hold back. A member that falls further behind
	// rejoins with pg_rewind or a base backup.
	set("max_slot_wal_keep_size", "4GB")
	set("hot_standby_feedback", "on")
	set("recovery_target_timeline", "latest")
	// The default 5s retry would add up to 5s to every failover when a
	// standby must switch to a new primary.
	set("wal_retrieve_retry_interval", "100ms")
	set("wal_receiver_status_interval", "1s")
	// Dead peers must be noticed in seconds, not the default minute.
	set("wal_sender_timeout", "5s")
	set("wal_receiver_timeout", "5s")

	// A backend that crashes takes the postmaster down instead of a restart
	// in place: the agent (its parent) then decides, as for any postmaster
	// exit (a primary's replica takes over; a replica restarts). A restart
	// in place would also hand out transaction ids again behind the
	// agent's back, ids the proxy's commit lookup must tell apart
	// (cluster.Member.FirstXID is read once per postmaster).
	set("restart_after_crash", "off")

	// Resources: three members may share a small machine.
	set("shared_buffers", "32MB")
	set("fsync", "on")

	// Logging goes to stderr, which the agent appends to ConfDir/postgresql.log.
	set("logging_collector", "off")
	set("log_destination", "stderr")
	set("lc_messages", "C")

	// Role-dependent settings.
	b.WriteString("\n# Role\n")
	if s.PrimaryConnInfo != nil {
		ci := *s.PrimaryConnInfo
		ci.AppName = c.Name
		if ci.User == "" {
			ci.User = c.ReplUser
		}
		if ci.Password == "" && ci.User == c.ReplUser {
			ci.Password = c.ReplPassword
		}
		if ci.ConnectTimeout == 0 {
			ci.ConnectTimeout = 5 * time.Second
		}
		set("primary_conninfo", ci.String())
	} else {
		set("primary_conninfo", "")
	}
	set("primary_slot_name", s.PrimarySlot)
	set("synchronous_standby_names", s.SyncStandbyNames)
	sc := s.SyncCommit
	if sc == "" {
		sc = "on"
	}
	set("synchronous_commit", sc)

	if len(c.Parameters) > 0 {
		b.WriteString("\n# User parameters\n")
		keys := make([]string, 0, len(c.Parameters))
		for k := range c.Parameters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(k, c.Parameters[k])
		}
	}

	var h strings.Builder
	h.WriteString("# Written by holdfast; changes are overwritten.\n")
	h.WriteString("# The socket directory is mode 0700, so only the OS user and root reach it.\n")
	h.WriteString("local all all trust\n")
	h.WriteString("local replication all trust\n")
	repl := `"` + c.ReplUser + `"`
	for _, addr := range []string{"127.0.0.1/32", "::1/128", "0.0.0.0/0", "::/0"} {
		fmt.Fprintf(&h, "host replication %s %s scram-sha-256\n", repl, addr)
	}
	for _, addr := range []string{"127.0.0.1/32", "::1/128", "0.0.0.0/0", "::/0"} {
		fmt.Fprintf(&h, "host all all %s scram-sha-256\n", addr)
	}
	return []byte(b.String()), []byte(h.String())
}

// WriteConfig (re)writes ConfDir/postgresql.conf, pg_hba.conf and an empty
// pg_ident.conf atomically, and creates or removes DataDir/standby.signal
// when the data directory exists (Start applies it otherwise). A running
// server picks up most changes (including primary_conninfo and
// synchronous_standby_names) on Reload; a change of Standby needs a restart
// or Promote.
func (i *Instance) WriteConfig(s Settings) error {
	if err := i.ensureConfDir(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	conf, hba := i.renderConfig(s)
	files := []struct {
		name string
		data []byte
	}{
		{"pg_ident.conf", []byte("# Written by holdfast.\n")},
		{"pg_hba.conf", hba},
		{"postgresql.conf", conf},
	}
	for _, f := range files {
		if err := i.writeFileAtomic(filepath.Join(i.cfg.ConfDir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	i.mu.Lock()
	saved := s
	i.settings = &saved
	i.mu.Unlock()
	if i.IsInitialized() {
		if err := i.applyStandbySignal(s.Standby); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	return nil
}

// applyStandbySignal makes the presence of DataDir/standby.signal match
// standby.
func (i *Instance) applyStandbySignal(standby bool) error {
	p := filepath.Join(i.cfg.DataDir, "standby.signal")
	if !standby {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
		return nil
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return i.writeFileAtomic(p, nil, 0o600)
}

// writeDataDirStub writes DataDir/postgresql.conf. The live configuration
// is in ConfDir; this file travels between members with pg_basebackup and
// pg_rewind, and is read only by the single-user crash recovery pg_rewind
// runs on an uncleanly stopped target. That recovery must run with the
// member's real settings, which the stub includes:
//   - it records wal_log_hints in pg_control, and pg_rewind then refuses a
//     target whose pg_control says off;
//   - its end-of-recovery checkpoint recycles WAL not kept by wal_keep_size,
//     and with the default (0) it recycled the WAL before the divergence
//     point that pg_rewind needs ("could not find previous WAL record").
//
// The settings before the include are fallbacks for when ConfDir's file is
// missing. The include names this member's ConfDir, so the copy another
// member receives names a foreign path: it is rewritten before every
// pg_rewind and after every base backup, and include_if_exists tolerates it
// meanwhile.
func (i *Instance) writeDataDirStub() error {
	stub := `# Written by holdfast. The live configuration of each member is in its conf
# dir, passed to the server with -c config_file=. This file is copied between
# members by pg_basebackup and pg_rewind and read only by pg_rewind's
# single-user crash recovery.
wal_level = 'replica'
wal_log_hints = 'on'
wal_keep_size = '256MB'
shared_buffers = '32MB'
lc_messages = 'C'
include_if_exists = ` + quoteConf(i.ConfigFile()) + "\n"
	return i.writeFileAtomic(filepath.Join(i.cfg.DataDir, "postgresql.conf"), []byte(stub), 0o600)
}

package postgres

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultBinDir is where Debian's postgresql-15 package installs the server.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// DefaultOSUser is the OS user PostgreSQL binaries run as when the agent is root.
const DefaultOSUser = "postgres"

// maxSocketPath is sizeof(sockaddr_un.sun_path)-1 on Linux. PostgreSQL
// refuses to start if the socket path is longer, with an error that does
// not mention ConfDir; Validate checks it up front.
const maxSocketPath = 107

// Config says where the instance lives and how it is reached.
type Config struct {
	// Name is the member name. It is the application_name a standby sends to
	// its primary (so it is what synchronous_standby_names matches) and, after
	// SlotName, the name of the member's replication slot.
	Name string
	// BinDir holds postgres, initdb, pg_basebackup, pg_rewind, pg_controldata.
	BinDir string
	// DataDir is PGDATA.
	DataDir string
	// ConfDir holds postgresql.conf, pg_hba.conf, pg_ident.conf, the server log
	// and run/ (the unix socket directory). It must be outside DataDir because
	// pg_rewind and pg_basebackup replace the data directory's contents with
	// another member's.
	ConfDir string
	// ListenAddr is listen_addresses: one address, a comma-separated list or "*".
	ListenAddr string
	Port       int
	// OSUser runs the PostgreSQL binaries when the agent's euid is 0.
	OSUser string
	// SuperUser is the bootstrap superuser (initdb -U). The agent uses it over
	// the unix socket (trust) and pg_rewind uses it over TCP (SCRAM).
	SuperUser, SuperPassword string
	// ReplUser is the replication role standbys and pg_basebackup use over TCP.
	ReplUser, ReplPassword string
	// Parameters are extra GUCs from the user's configuration, written after
	// the ones this package manages. Names that would break the agent's
	// control of the instance are refused by Validate.
	Parameters map[string]string
}

// managedParams are GUCs the agent must control; overriding them from user
// configuration would make the agent lose its instance (socket, port, data
// directory), break replication it set up, or break pg_rewind.
var managedParams = map[string]string{
	"data_directory":            "the agent passes -D",
	"config_file":               "the agent passes config_file",
	"hba_file":                  "pg_hba.conf is written by the agent",
	"ident_file":                "pg_ident.conf is written by the agent",
	"port":                      "set Config.Port",
	"listen_addresses":          "set Config.ListenAddr",
	"unix_socket_directories":   "the agent connects through ConfDir/run",
	"primary_conninfo":          "replication is managed by the agent",
	"primary_slot_name":         "replication is managed by the agent",
	"synchronous_standby_names": "synchronous replication is managed by the agent",
	"recovery_target_timeline":  "standbys must follow the latest timeline after failover",
	"hot_standby":               "the agent needs to query standbys",
	"wal_log_hints":             "pg_rewind needs it",
	"cluster_name":              "it is the member name",
}

var (
	roleNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	gucNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
	listenAddrE = regexp.MustCompile(`^[A-Za-z0-9.:*%_-]+(\s*,\s*[A-Za-z0-9.:*%_-]+)*$`)
)

// withDefaults fills in the documented defaults.
func (c Config) withDefaults() Config {
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir
	}
	if c.OSUser == "" {
		c.OSUser = DefaultOSUser
	}
	return c
}

// Validate reports every problem with the configuration at once, after
// applying defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case c.Name == "":
		bad("name is empty")
	case len(c.Name) > 63:
		// The server truncates application_name to 63 bytes; a longer name
		// would never match synchronous_standby_names.
		bad("name %q is longer than 63 bytes", c.Name)
	case !printableASCII(c.Name):
		// The server replaces non-printable-ASCII bytes of application_name
		// with '?', which again breaks synchronous_standby_names matching.
		bad("name %q must be printable ASCII", c.Name)
	}

	for _, d := range []struct{ what, path string }{{"bin dir", c.BinDir}, {"data dir", c.DataDir}, {"conf dir", c.ConfDir}} {
		if d.path == "" {
			bad("%s is empty", d.what)
		} else if !filepath.IsAbs(d.path) {
			bad("%s %q is not an absolute path", d.what, d.path)
		} else if filepath.Clean(d.path) == "/" {
			bad("%s must not be /", d.what)
		}
	}
	if c.DataDir != "" && c.ConfDir != "" {
		dd, cd := filepath.Clean(c.DataDir), filepath.Clean(c.ConfDir)
		if dd == cd || within(cd, dd) || within(dd, cd) {
			bad("conf dir %q and data dir %q must not contain each other: pg_rewind and pg_basebackup replace the data dir", c.ConfDir, c.DataDir)
		}
		if n := len(filepath.Join(cd, "run", ".s.PGSQL.65535")); n > maxSocketPath {
			bad("conf dir %q is too long: the unix socket path would be %d bytes, the limit is %d", c.ConfDir, n, maxSocketPath)
		}
	}

	if c.ListenAddr == "" {
		bad("listen address is empty")
	} else if !listenAddrE.MatchString(c.ListenAddr) {
		bad("listen address %q is not a comma-separated list of host names or addresses", c.ListenAddr)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port %d is out of range", c.Port)
	}

	for _, r := range []struct{ what, name, pw string }{{"superuser", c.SuperUser, c.SuperPassword}, {"replication user", c.ReplUser, c.ReplPassword}} {
		// Role names are restricted (rather than quoted everywhere) because
		// they also appear in pg_hba.conf, whose quoting rules are weaker
		// than SQL's.
		if !roleNameRE.MatchString(r.name) || len(r.name) > 63 {
			bad("%s name %q must match %s and be at most 63 bytes", r.what, r.name, roleNameRE)
		}
		if r.pw == "" {
			bad("%s password is empty: members authenticate to each other with SCRAM over TCP", r.what)
		} else if strings.ContainsAny(r.pw, "\x00\r\n") {
			// initdb --pwfile reads one line; libpq and the SQL literal
			// would cope, but a password that cannot be bootstrapped is
			// better refused at startup.
			bad("%s password contains a NUL or newline", r.what)
		}
	}
	if c.OSUser == "" {
		bad("OS user is empty")
	}

	for k, v := range c.Parameters {
		if !gucNameRE.MatchString(k) {
			bad("parameter name %q is not a valid setting name", k)
			continue
		}
		if why, ok := managedParams[strings.ToLower(k)]; ok {
			bad("parameter %s cannot be set: %s", k, why)
		}
		if strings.ToLower(k) == "wal_level" && strings.EqualFold(strings.TrimSpace(v), "minimal") {
			bad("parameter wal_level cannot be minimal: replication needs replica or logical")
		}
		if strings.ContainsRune(v, 0) {
			bad("parameter %s contains a NUL byte", k)
		}
	}
	return errors.Join(errs...)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// within reports whether path is strictly inside dir (both cleaned).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

package config

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Credentials are a login for PostgreSQL, kept in a shell-sourceable file
// (PGUSER=..., PGPASSWORD=..., PGDATABASE=...) with mode 0600.
type Credentials struct {
	User     string
	Password string
	Database string
}

// Secret file names inside Postgres.SecretsDir.
const (
	AdminSecrets       = "admin.env"
	AppSecrets         = "app.env"
	ReplicationSecrets = "replication.env"
)

// GeneratePassword returns 24 random bytes, URL-safe base64 (no quoting needed
// in shell, libpq conninfo or SQL literals).
func GeneratePassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// WriteCredentials writes c to path with mode 0600, atomically.
func WriteCredentials(path string, c Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	for _, v := range []string{c.User, c.Password, c.Database} {
		if strings.ContainsAny(v, "'\"\\$`\n ") {
			return fmt.Errorf("write %s: value %q needs shell quoting, which this file format does not do", path, v)
		}
	}
	// The export line makes `. app.env; psql` work: plain assignments
	// would not reach psql's environment.
	content := fmt.Sprintf("PGUSER=%s\nPGPASSWORD=%s\nPGDATABASE=%s\nexport PGUSER PGPASSWORD PGDATABASE\n", c.User, c.Password, c.Database)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadCredentials reads a file written by WriteCredentials. It refuses files
// readable by group or others: they hold passwords.
func ReadCredentials(path string) (Credentials, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Credentials{}, fmt.Errorf("read credentials: %s is mode %v: it holds a password and must be 0600", path, st.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	var c Credentials
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "export ") && !strings.Contains(line, "=") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return Credentials{}, fmt.Errorf("read credentials: %s: line %q is not KEY=VALUE", path, line)
		}
		switch k {
		case "PGUSER":
			c.User = v
		case "PGPASSWORD":
			c.Password = v
		case "PGDATABASE":
			c.Database = v
		}
	}
	if err := sc.Err(); err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %s: %w", path, err)
	}
	if c.User == "" || c.Password == "" {
		return Credentials{}, fmt.Errorf("read credentials: %s: PGUSER and PGPASSWORD are required", path)
	}
	return c, nil
}

// EnsureSecrets creates the admin, replication and app credential files in
// dir unless they exist, and returns all three.
func (c Config) EnsureSecrets() (admin, repl, app Credentials, err error) {
	dir := c.Postgres.SecretsDir
	want := []struct {
		file string
		cred *Credentials
		user string
		db   string
	}{
		{AdminSecrets, &admin, c.Postgres.SuperUser, "postgres"},
		{ReplicationSecrets, &repl, c.Postgres.ReplicationUser, "postgres"},
		{AppSecrets, &app, c.Postgres.AppUser, c.Postgres.AppDatabase},
	}
	for _, w := range want {
		path := filepath.Join(dir, w.file)
		if cr, rerr := ReadCredentials(path); rerr == nil {
			*w.cred = cr
			continue
		} else if !errors.Is(rerr, os.ErrNotExist) {
			return admin, repl, app, rerr
		}
		pw, gerr := GeneratePassword()
		if gerr != nil {
			return admin, repl, app, gerr
		}
		*w.cred = Credentials{User: w.user, Password: pw, Database: w.db}
		if werr := WriteCredentials(path, *w.cred); werr != nil {
			return admin, repl, app, werr
		}
	}
	return admin, repl, app, nil
}

// LoadSecrets reads the admin and replication credentials an agent needs.
func (c Config) LoadSecrets() (admin, repl Credentials, err error) {
	if admin, err = ReadCredentials(filepath.Join(c.Postgres.SecretsDir, AdminSecrets)); err != nil {
		return admin, repl, err
	}
	repl, err = ReadCredentials(filepath.Join(c.Postgres.SecretsDir, ReplicationSecrets))
	return admin, repl, err
}

package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/proxy/scram"
)

// The users file holds one `"user" "SCRAM-SHA-256$..."` line per login
// (PgBouncer's userlist.txt format): what clients are checked against. The
// passwords the proxy presents to PostgreSQL come from the credential files
// in the secrets directory.

// EnsureUsersFile adds a verifier for each credential whose user is not in
// the file yet (creating it with mode 0600).
func EnsureUsersFile(path string, creds ...config.Credentials) error {
	have, err := readUsersFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var add []string
	for _, c := range creds {
		if _, ok := have[c.User]; ok {
			continue
		}
		v, err := scram.NewVerifier(c.Password, scram.DefaultIterations)
		if err != nil {
			return fmt.Errorf("proxy users: verifier for %s: %w", c.User, err)
		}
		add = append(add, fmt.Sprintf("%s %s\n", strconv.Quote(c.User), strconv.Quote(v.String())))
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("proxy users: %w", err)
	}
	defer f.Close()
	for _, l := range add {
		if _, err := f.WriteString(l); err != nil {
			return fmt.Errorf("proxy users: %w", err)
		}
	}
	return f.Close()
}

// LoadUsers reads the users file and pairs each verifier with the server
// password of the credential of the same user. Logins without a server
// password are left out (the proxy could not open their server connections).
func LoadUsers(path string, creds ...config.Credentials) (StaticUsers, error) {
	vs, err := readUsersFile(path)
	if err != nil {
		return nil, err
	}
	out := StaticUsers{}
	for _, c := range creds {
		if v, ok := vs[c.User]; ok {
			out[c.User] = User{Verifier: v, ServerPassword: c.Password}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("proxy users: %s has no verifier for any known login", path)
	}
	return out, nil
}

func readUsersFile(path string) (map[string]scram.Verifier, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("proxy users: %s is mode %v; it must be 0600", path, st.Mode().Perm())
	}
	out := map[string]scram.Verifier{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, rest, err := unquoteField(line)
		if err == nil {
			var vs string
			vs, rest, err = unquoteField(strings.TrimSpace(rest))
			if err == nil && strings.TrimSpace(rest) != "" {
				err = errors.New("unexpected text after the verifier")
			}
			if err == nil {
				var v scram.Verifier
				if v, err = scram.ParseVerifier(vs); err == nil {
					out[user] = v
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("proxy users: %s line %d: %w", path, n, err)
		}
	}
	return out, sc.Err()
}

// unquoteField reads one Go-quoted string at the start of s.
func unquoteField(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New(`want a double-quoted field`)
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", fmt.Errorf("bad quoted field: %w", err)
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

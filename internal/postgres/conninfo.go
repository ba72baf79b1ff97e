package postgres

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// ConnInfo is a libpq connection target.
type ConnInfo struct {
	Host           string
	Port           int
	User           string
	Password       string
	DBName         string
	AppName        string
	ConnectTimeout time.Duration
}

// String renders the libpq keyword=value form used for primary_conninfo and
// pg_rewind --source-server. Every value is single-quoted with backslashes
// and quotes backslash-escaped, which is the one quoting libpq's conninfo
// parser accepts for arbitrary bytes. Empty fields are left out so libpq
// defaults apply. The password is included when set: callers that pass the
// string on a command line must clear it and use PGPASSWORD instead.
func (c ConnInfo) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+quoteConnValue(v))
		}
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("user", c.User)
	add("password", c.Password)
	add("dbname", c.DBName)
	add("application_name", c.AppName)
	if c.ConnectTimeout > 0 {
		// libpq takes whole seconds; round up so a sub-second timeout does
		// not become "no timeout" (0).
		add("connect_timeout", strconv.Itoa(int(math.Ceil(c.ConnectTimeout.Seconds()))))
	}
	return strings.Join(parts, " ")
}

func quoteConnValue(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('\'')
	for k := 0; k < len(v); k++ {
		if v[k] == '\'' || v[k] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[k])
	}
	b.WriteByte('\'')
	return b.String()
}

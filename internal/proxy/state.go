package proxy

import "strings"

// createsSessionStateText is createsSessionState by full normalisation of
// every statement: the reference, used when a cheap look at statement heads
// cannot decide.
func createsSessionStateText(sql string) bool {
	for _, stmt := range strings.Split(sql, ";") {
		s := strings.ToUpper(strings.Join(strings.Fields(stripComments(stmt)), " "))
		switch {
		case s == "":
		case strings.HasPrefix(s, "SET "):
			if !strings.HasPrefix(s, "SET LOCAL ") && !strings.HasPrefix(s, "SET TRANSACTION ") && !strings.HasPrefix(s, "SET CONSTRAINTS ") {
				return true
			}
		case strings.HasPrefix(s, "LISTEN "), strings.HasPrefix(s, "PREPARE "), strings.HasPrefix(s, "LOAD "),
			strings.HasPrefix(s, "CREATE TEMP"), strings.HasPrefix(s, "CREATE LOCAL TEMP"), strings.HasPrefix(s, "CREATE GLOBAL TEMP"),
			strings.HasPrefix(s, "CREATE UNLOGGED TEMP"), strings.HasPrefix(s, "SELECT INTO TEMP"):
			return true
		case strings.HasPrefix(s, "DECLARE ") && strings.Contains(s, " WITH HOLD "):
			return true
		case strings.Contains(s, "PG_ADVISORY_LOCK") && !strings.Contains(s, "PG_ADVISORY_XACT_LOCK"),
			strings.Contains(s, "PG_TRY_ADVISORY_LOCK"),
			strings.Contains(s, "SET_CONFIG(") && !strings.Contains(s, ", TRUE)"),
			strings.Contains(s, " TEMPORARY TABLE"), strings.Contains(s, " TEMP TABLE"):
			return true
		}
	}
	return false
}

// stripComments removes -- and /* */ comments (string literals are not
// parsed: a false "yes" only costs a transparent move).
func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return b.String()
			}
			i += j
			b.WriteByte(' ')
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return b.String()
			}
			i += j + 3
			b.WriteByte(' ')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

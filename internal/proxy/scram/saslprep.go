package scram

import (
	"errors"
	"sort"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

//go:generate sh -c "python3 gen_tables.py > saslprep_tables.go"

// runeRanges is a sorted list of inclusive, non-overlapping code point ranges.
type runeRanges [][2]rune

func (t runeRanges) contains(r rune) bool {
	i := sort.Search(len(t), func(i int) bool { return t[i][1] >= r })
	return i < len(t) && t[i][0] <= r
}

var (
	errSASLprepInvalidUTF8 = errors.New("saslprep: password is not valid UTF-8")
	errSASLprepProhibited  = errors.New("saslprep: password contains prohibited characters")
)

// saslprep applies SASLprep (RFC 4013) to password exactly as PostgreSQL's
// pg_saslprep (src/common/saslprep.c) does, including its quirks:
//
//   - pure-ASCII input (including ASCII control characters) is returned
//     unchanged;
//   - input that is not valid UTF-8 yields errSASLprepInvalidUTF8;
//   - mapping: RFC 3454 C.1.2 (non-ASCII spaces) -> U+0020, B.1 removed;
//     an empty result is prohibited;
//   - normalization: NFKC (golang.org/x/text/unicode/norm);
//   - the prohibited-output (C.1.2, C.2.1, C.2.2, C.3-C.9), unassigned (A.1,
//     Unicode 3.2) and bidi (D.1/D.2) checks are applied, as in PostgreSQL,
//     to the mapped string *before* normalization;
//   - the result is the normalized string.
//
// Callers that build verifiers follow PostgreSQL and fall back to the raw
// password bytes when saslprep returns an error (see preparePassword).
func saslprep(password string) (string, error) {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return password, nil
	}
	if !utf8.ValidString(password) {
		return "", errSASLprepInvalidUTF8
	}

	// 1) Map.
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case tableC12NonASCIISpace.contains(r):
			mapped = append(mapped, ' ')
		case tableB1MappedToNothing.contains(r):
			// mapped to nothing
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return "", errSASLprepProhibited
	}

	// 2) Normalize.
	out := norm.NFKC.String(string(mapped))

	// 3) Prohibit (on the pre-normalization runes, as PostgreSQL does).
	for _, r := range mapped {
		if tableProhibitedOutput.contains(r) || tableA1Unassigned.contains(r) {
			return "", errSASLprepProhibited
		}
	}

	// 4) Bidi.
	hasRandAL := false
	for _, r := range mapped {
		if tableD1RandALCat.contains(r) {
			hasRandAL = true
			break
		}
	}
	if hasRandAL {
		for _, r := range mapped {
			if tableD2LCat.contains(r) {
				return "", errSASLprepProhibited
			}
		}
		if !tableD1RandALCat.contains(mapped[0]) || !tableD1RandALCat.contains(mapped[len(mapped)-1]) {
			return "", errSASLprepProhibited
		}
	}
	return out, nil
}

// preparePassword returns the bytes PostgreSQL feeds to PBKDF2 for password:
// the SASLprep'd form when SASLprep succeeds, otherwise the raw bytes
// (pg_be_scram_build_secret / scram_verify_plain_password behaviour).
func preparePassword(password string) []byte {
	if p, err := saslprep(password); err == nil {
		return []byte(p)
	}
	return []byte(password)
}

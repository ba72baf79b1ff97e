package store

import (
	"fmt"
	"strings"
	"unicode"
)

// Key names below the cluster prefix. They are part of the on-disk format:
// changing one strands the state of running clusters.
const (
	membersDir     = "members/"
	leaderDir      = "leader/"
	eventsDir      = "events/"
	lastPrimaryDir = "last-primary/"
	topologyKey    = "topology"
	initKey        = "initialize"
)

// maxNameLen keeps keys short; etcd's limit is far higher, but a name this
// long is a configuration mistake.
const maxNameLen = 253

// validName checks a cluster, member or region name before it becomes part of
// a key. A '/' would let one name reach into another's key space (member "a/b"
// versus prefix scans of "a"), so it is refused.
func validName(name string) error {
	if name == "" {
		return fmt.Errorf("name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name %.20q... is longer than %d bytes", name, maxNameLen)
	}
	for _, r := range name {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("name %q contains %q: use letters, digits, '-', '_' or '.'", name, r)
		}
	}
	return nil
}

func (s *Store) memberKey(name string) string        { return s.prefix + membersDir + name }
func (s *Store) leaderKey(region string) string      { return s.prefix + leaderDir + region }
func (s *Store) topologyKey() string                 { return s.prefix + topologyKey }
func (s *Store) initKey() string                     { return s.prefix + initKey }
func (s *Store) eventsPrefix() string                { return s.prefix + eventsDir }
func (s *Store) lastPrimaryKey(region string) string { return s.prefix + lastPrimaryDir + region }

// keyKind is what a key under the cluster prefix holds.
type keyKind int

const (
	keyOther keyKind = iota
	keyMember
	keyLeader
	keyTopology
	keyInitialize
	keyEvent
)

// parseKey splits a key read from etcd. A key with an empty or nested name
// (written by something other than this package) is keyOther and ignored.
func parseKey(prefix, key string) (keyKind, string) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return keyOther, ""
	}
	switch {
	case rest == topologyKey:
		return keyTopology, ""
	case rest == initKey:
		return keyInitialize, ""
	case strings.HasPrefix(rest, eventsDir):
		return keyEvent, rest[len(eventsDir):]
	}
	for _, d := range []struct {
		dir  string
		kind keyKind
	}{{membersDir, keyMember}, {leaderDir, keyLeader}} {
		if name, ok := strings.CutPrefix(rest, d.dir); ok {
			if validName(name) != nil {
				return keyOther, ""
			}
			return d.kind, name
		}
	}
	return keyOther, ""
}

package store

import (
	"strings"
	"testing"
)

// Values in etcd are untrusted: decoding must return errors, never panic.

var fuzzSeeds = []string{
	``, `null`, `[]`, `"x"`, `1`, `{}`, `{"name":"m1"}`, `{"name":"m2"}`,
	`{"name":"m1","lsn":"0/3000148","replay_lsn":12,"updated_at":"2026-01-01T00:00:00Z"}`,
	`{"lsn":"zz/1"}`, `{"lsn":"FFFFFFFFF/0"}`, `{"lsn":-1}`, `{"lsn":1e400}`,
	`{"region":"home","member":"m1","lease_id":7}`, `{"region":"away","member":"m1"}`, `{"member":""}`,
	`{"sync_set":["a",null,3],"switchover":{"min_lsn":"1/1"},"failover":null}`,
	`{"time":"not a time","fields":{"a":"b"}}`, `{"member":"m1","system_id":"7"}`,
	"{\"name\":\"\xff\"}", `{"name":"m1"`, ` {"name":"m1"} trailing`,
}

func FuzzDecodeMember(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add("m1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, name string, value []byte) {
		m, err := decodeMember(name, value)
		if err == nil && m.Name != name {
			t.Fatalf("decoded member %q under key %q", m.Name, name)
		}
	})
}

func FuzzDecodeLeader(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add("home", []byte(s))
	}
	f.Fuzz(func(t *testing.T, region string, value []byte) {
		l, err := decodeLeader(region, value)
		if err == nil && (l.Region != region || l.Member == "") {
			t.Fatalf("accepted leader %+v under region %q", l, region)
		}
	})
}

func FuzzDecodeOthers(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		_, _ = decodeTopology(value)
		_, _ = decodeEvent(value)
		if v, err := decodeInit(value); err == nil && v.Member == "" {
			t.Fatal("accepted initialize without member")
		}
	})
}

func FuzzParseKey(f *testing.F) {
	const p = "/holdfast/c/"
	for _, k := range []string{p + "members/m1", p + "leader/home", p + "topology", p + "initialize",
		p + "events/00000000000000000001-m1", p + "members/", p + "members/a/b", "/other/x", p, ""} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		kind, name := parseKey(p, key)
		if (kind == keyMember || kind == keyLeader) && (validName(name) != nil || strings.Contains(name, "/")) {
			t.Fatalf("key %q parsed to invalid name %q", key, name)
		}
	})
}

func TestDecodeRejectsMismatchAndNonObjects(t *testing.T) {
	t.Parallel()
	if _, err := decodeMember("m1", []byte(`{"name":"m2"}`)); err == nil {
		t.Error("member under another's key accepted")
	}
	m, err := decodeMember("m1", []byte(`{"region":"home"}`))
	if err != nil || m.Name != "m1" {
		t.Errorf("member without name: %+v %v", m, err)
	}
	for _, v := range []string{`null`, ` `, `[]`, `"s"`} {
		if _, err := decodeTopology([]byte(v)); err == nil {
			t.Errorf("topology %q accepted", v)
		}
	}
	if _, err := decodeLeader("home", []byte(`{"region":"away","member":"m1"}`)); err == nil {
		t.Error("leader of another region accepted")
	}
}

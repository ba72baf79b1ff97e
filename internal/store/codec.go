package store

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/holdfast/holdfast/internal/cluster"
)

// Decoders for values read from etcd. Anyone with access to etcd can write
// anything under our prefix, so these treat values as untrusted input: they
// return errors, never panic (see the fuzz tests), and check that a value
// agrees with the key it was found under.

// unmarshalObject decodes a JSON object. Unknown fields are accepted so that
// an older agent can read what a newer one wrote during a rolling upgrade;
// "null", arrays and scalars are refused because they would decode into a zero
// value that looks legitimate.
func unmarshalObject(value []byte, v any) error {
	t := bytes.TrimLeft(value, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("want a JSON object, got %d bytes starting %.16q", len(value), value)
	}
	if err := json.Unmarshal(value, v); err != nil {
		return err
	}
	return nil
}

func decodeMember(name string, value []byte) (cluster.Member, error) {
	var m cluster.Member
	if err := unmarshalObject(value, &m); err != nil {
		return cluster.Member{}, fmt.Errorf("member %q: %w", name, err)
	}
	if m.Name == "" {
		m.Name = name
	}
	if m.Name != name {
		return cluster.Member{}, fmt.Errorf("member key %q holds a report of member %q", name, m.Name)
	}
	return m, nil
}

func decodeLeader(region string, value []byte) (cluster.Leader, error) {
	var l cluster.Leader
	if err := unmarshalObject(value, &l); err != nil {
		return cluster.Leader{}, fmt.Errorf("leader of region %q: %w", region, err)
	}
	if l.Region == "" {
		l.Region = region
	}
	if l.Region != region {
		return cluster.Leader{}, fmt.Errorf("leader key of region %q names region %q", region, l.Region)
	}
	if l.Member == "" {
		return cluster.Leader{}, fmt.Errorf("leader of region %q names no member", region)
	}
	return l, nil
}

func decodeTopology(value []byte) (cluster.Topology, error) {
	var t cluster.Topology
	if err := unmarshalObject(value, &t); err != nil {
		return cluster.Topology{}, fmt.Errorf("topology: %w", err)
	}
	return t, nil
}

func decodeEvent(value []byte) (cluster.Event, error) {
	var e cluster.Event
	if err := unmarshalObject(value, &e); err != nil {
		return cluster.Event{}, fmt.Errorf("event: %w", err)
	}
	return e, nil
}

// initValue is the value of the initialize key. JSON rather than
// "member\nsystemid" so that a field can be added later without a format war.
type initValue struct {
	Member   string `json:"member"`
	SystemID string `json:"system_id,omitempty"`
}

func decodeInit(value []byte) (initValue, error) {
	var v initValue
	if err := unmarshalObject(value, &v); err != nil {
		return initValue{}, fmt.Errorf("initialize: %w", err)
	}
	if v.Member == "" {
		return initValue{}, fmt.Errorf("initialize names no member")
	}
	return v, nil
}

// encode marshals a value for etcd. The types are ours and always marshal;
// the error path exists for LSN's custom marshaller.
func encode(what string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", what, err)
	}
	return string(b), nil
}

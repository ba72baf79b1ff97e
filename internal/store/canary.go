package store

import (
	"context"
	"encoding/json"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func (s *Store) canaryPrefix() string { return s.prefix + "canary/" }

// PutCanary records the state of region's canary (JSON of v).
func (s *Store) PutCanary(ctx context.Context, region string, v any) error {
	return s.putNamedJSON(ctx, "put canary", s.canaryPrefix(), region, v)
}

// putNamedJSON writes v as JSON under prefix+name (name checked).
func (s *Store) putNamedJSON(ctx context.Context, what, prefix, name string, v any, opts ...clientv3.OpOption) error {
	if err := validName(name); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.cli.Put(ctx, prefix+name, string(b), opts...)
	return wrapErr(ctx, what, err)
}

// Canaries reads every region's canary state, as JSON.
func (s *Store) Canaries(ctx context.Context) (map[string]json.RawMessage, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.canaryPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, wrapErr(ctx, "get canaries", err)
	}
	out := map[string]json.RawMessage{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.canaryPrefix())] = json.RawMessage(kv.Value)
	}
	return out, nil
}

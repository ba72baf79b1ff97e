package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// proxiesDir holds one key per running proxy, attached to its lease.
const proxiesDir = "proxies/"

func (s *Store) proxyKey(id string) string { return s.prefix + proxiesDir + id }

// ProxyReport is what a proxy publishes about itself. Agents read it during
// a planned switchover: the old primary stops only once every proxy has
// acknowledged (SwitchoverAck) that it holds new work and has drained the
// transactions in flight, so the switchover costs clients no error.
type ProxyReport struct {
	ID        string    `json:"id"`
	Region    string    `json:"region"`
	Addr      string    `json:"addr"`
	StartedAt time.Time `json:"started_at"`
	// SwitchoverAck is the token (SwitchoverToken) of the switchover the
	// proxy is ready for; Drained says whether every transaction finished
	// (false: the drain timed out and some will get a retryable error).
	SwitchoverAck string    `json:"switchover_ack,omitempty"`
	Drained       bool      `json:"drained,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// SwitchoverToken identifies one switchover request.
func SwitchoverToken(requestedAt time.Time) string {
	return requestedAt.UTC().Format(time.RFC3339Nano)
}

// PutProxy publishes r under proxies/<id>, attached to lease so that the
// report disappears when the proxy dies.
func (s *Store) PutProxy(ctx context.Context, r ProxyReport, lease LeaseID) error {
	if err := validName(r.ID); err != nil {
		return fmt.Errorf("store: put proxy: %w", err)
	}
	if lease == 0 {
		return fmt.Errorf("store: put proxy %s: no lease", r.ID)
	}
	r.UpdatedAt = time.Now()
	val, err := encode("proxy", r)
	if err != nil {
		return err
	}
	return s.putLeased(ctx, s.proxyKey(r.ID), val, lease, "put proxy "+r.ID)
}

// DeleteProxy removes a proxy's report.
func (s *Store) DeleteProxy(ctx context.Context, id string) error {
	return s.deleteKey(ctx, s.proxyKey(id), "delete proxy "+id)
}

// Proxies returns the live proxies' reports. Undecodable ones are skipped.
func (s *Store) Proxies(ctx context.Context) ([]ProxyReport, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+proxiesDir, clientv3.WithPrefix())
	if err != nil {
		return nil, wrapErr(ctx, "list proxies", err)
	}
	out := make([]ProxyReport, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r ProxyReport
		if err := json.Unmarshal(kv.Value, &r); err != nil || r.ID == "" {
			s.log.Warn("ignoring undecodable proxy report", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

package testutil

import (
	"fmt"
	"testing"

	"github.com/holdfast/holdfast/internal/config"
)

// ClusterConfig is the default deployment on free ports in a fresh
// directory: etcd, members, their metrics, the proxy endpoints, the api
// server and NATS, so that
// tests and a running `holdfast up` never collide.
func ClusterConfig(t testing.TB, cluster string) config.Config {
	t.Helper()
	cfg := config.Default()
	// One region: the region tests add their own standby region.
	cfg.PrimaryRegionOnly()
	cfg.Cluster = cluster
	cfg.DataDir = TempDir(t)
	c, p := FreePort(t), FreePort(t)
	cfg.Etcd.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", c)
	cfg.Etcd.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", p)
	cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", c)}
	cfg.Proxy.WriterAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg.Proxy.ReaderAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg.Proxy.AdminAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg.API.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg.Buffer.EmbeddedAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	for i := range cfg.Regions[0].Members {
		cfg.Regions[0].Members[i].Port = FreePort(t)
		cfg.Regions[0].Members[i].AdvertisePort = FreePort(t)
		cfg.Regions[0].Members[i].MetricsPort = FreePort(t)
	}
	return cfg
}

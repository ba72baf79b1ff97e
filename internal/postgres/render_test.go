package postgres

import (
	"strings"
	"testing"
)

func TestRenderConfig(t *testing.T) {
	cfg := testConfig("/srv/hf", "home-b", 5433)
	cfg = cfg.withDefaults()
	i := &Instance{cfg: cfg}
	conf, hba := i.renderConfig(Settings{
		Standby:          true,
		PrimaryConnInfo:  &ConnInfo{Host: "10.0.0.1", Port: 5432, AppName: "ignored"},
		PrimarySlot:      "home_b",
		SyncStandbyNames: SyncStandbyNamesAny(1, []string{"home-a", "home-c"}),
	})
	if testing.Verbose() {
		t.Logf("postgresql.conf:\n%s\npg_hba.conf:\n%s", conf, hba)
	}
	for _, want := range []string{
		"hba_file = '/srv/hf/home-b/conf/pg_hba.conf'\n",
		"unix_socket_directories = '/srv/hf/home-b/conf/run'\n",
		"port = '5433'\n",
		"wal_log_hints = 'on'\n",
		"wal_retrieve_retry_interval = '100ms'\n",
		"restart_after_crash = 'off'\n",
		`primary_conninfo = 'host=''10.0.0.1'' port=''5432'' user=''replicator'' password=''re\\''pl\\\\ pw'' application_name=''home-b'' connect_timeout=''5'''` + "\n",
		"primary_slot_name = 'home_b'\n",
		`synchronous_standby_names = 'ANY 1 ("home-a","home-c")'` + "\n",
		"synchronous_commit = 'on'\n",
		"work_mem = '8MB'\n",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("postgresql.conf lacks %s", want)
		}
	}
	if strings.Contains(string(conf), "data_directory") {
		t.Error("postgresql.conf sets data_directory")
	}
	for _, want := range []string{
		"local all all trust\n",
		`host replication "replicator" 0.0.0.0/0 scram-sha-256` + "\n",
		"host all all 127.0.0.1/32 scram-sha-256\n",
	} {
		if !strings.Contains(string(hba), want) {
			t.Errorf("pg_hba.conf lacks %s", want)
		}
	}
}

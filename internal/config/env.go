package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment override: HOLDFAST_FAILOVER_LEASE_TTL=3s
// sets failover.lease_ttl. Lists are comma-separated.
const EnvPrefix = "HOLDFAST_"

// envNotConfig are HOLDFAST_* variables that are not config overrides.
var envNotConfig = map[string]bool{"HOLDFAST_CONFIG": true, "HOLDFAST_BIN": true, "HOLDFAST_LOG_LEVEL": true, "HOLDFAST_KEEP_TEST_DIRS": true}

// EnvVars lists every supported override with its YAML path, in order.
func EnvVars() map[string]string {
	out := map[string]string{}
	walkEnv(reflect.TypeOf(Config{}), "", "", func(env, path string, _ []int) { out[env] = path })
	return out
}

func walkEnv(t reflect.Type, envPrefix, pathPrefix string, fn func(env, path string, index []int), index ...int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		env := envPrefix + strings.ToUpper(tag)
		path := pathPrefix + tag
		idx := append(append([]int{}, index...), i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			walkEnv(f.Type, env+"_", path+".", fn, idx...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.String:
			// regions: only in the file.
		case f.Type.Kind() == reflect.Map:
			// postgres.parameters: only in the file.
		default:
			fn(EnvPrefix+env, path, idx)
		}
	}
}

// ApplyEnv sets fields from HOLDFAST_* variables in environ ("K=V" strings).
// An unknown HOLDFAST_ variable is an error so that a typo is not ignored.
func ApplyEnv(c *Config, environ []string) error {
	type target struct {
		path  string
		index []int
	}
	known := map[string]target{}
	walkEnv(reflect.TypeOf(Config{}), "", "", func(env, path string, index []int) { known[env] = target{path, index} })
	var keys []string
	vals := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) || envNotConfig[k] {
			continue
		}
		keys = append(keys, k)
		vals[k] = v
	}
	sort.Strings(keys)
	root := reflect.ValueOf(c).Elem()
	for _, k := range keys {
		t, ok := known[k]
		if !ok {
			return fmt.Errorf("%w: environment variable %s does not match any setting (see `holdfast up --print-config`)", ErrInvalid, k)
		}
		if err := setField(root.FieldByIndex(t.index), vals[k]); err != nil {
			return fmt.Errorf("%w: %s (from %s): %v", ErrInvalid, t.path, k, err)
		}
	}
	return nil
}

func setField(f reflect.Value, s string) error {
	switch f.Type() {
	case reflect.TypeOf(Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (examples: 500ms, 2s)", s)
		}
		f.SetInt(int64(d))
		return nil
	case reflect.TypeOf(ByteSize(0)):
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(b))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.SetBool(b)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

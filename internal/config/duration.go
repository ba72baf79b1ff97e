package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as Go duration text ("2s", "500ms").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads duration text such as "1.5s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"2s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 500ms, 2s, 1m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a size written as "16MB", "512kB" or a plain number of bytes.
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"KB", 1 << 10}, {"B", 1}}

// ParseByteSize parses "16MB" style sizes (binary multiples, as PostgreSQL does).
func ParseByteSize(s string) (ByteSize, error) {
	for _, u := range sizeUnits {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			var n int64
			if _, err := fmt.Sscanf(s[:len(s)-len(u.suffix)], "%d", &n); err != nil || n < 0 {
				return 0, fmt.Errorf("%q is not a size (examples: 16MB, 512kB, 1048576)", s)
			}
			return ByteSize(n * u.mult), nil
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("%q is not a size (examples: 16MB, 512kB, 1048576)", s)
	}
	return ByteSize(n), nil
}

func (b ByteSize) String() string {
	for _, u := range sizeUnits {
		if u.mult > 1 && int64(b) >= u.mult && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%d", int64(b))
}

// MarshalYAML writes the size as text.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

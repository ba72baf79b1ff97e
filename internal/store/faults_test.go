package store

import (
	"strings"
	"testing"
)

func TestFaultValidate(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string // "" valid, else a part of the error
	}{
		{Fault{Mode: FaultPartition}, ""},
		{Fault{Mode: FaultDown}, ""},
		{Fault{Mode: FaultPartitionEtcd}, ""},
		{Fault{Mode: FaultOneWayFrom}, ""},
		{Fault{Mode: FaultOneWayTo}, ""},
		{Fault{Mode: FaultSlow, DelayMS: 200}, ""},
		{Fault{Mode: ""}, "mode"},
		{Fault{Mode: "flood"}, "mode"},
		{Fault{Mode: FaultSlow}, "delay_ms"},
		{Fault{Mode: FaultSlow, DelayMS: -5}, "delay_ms"},
		{Fault{Mode: FaultSlow, DelayMS: 60_001}, "delay_ms"},
		{Fault{Mode: FaultPartition, DelayMS: 10}, "delay_ms"},
	} {
		err := tc.f.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", tc.f, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error about %s", tc.f, err, tc.want)
		}
	}
}

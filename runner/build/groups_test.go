package build

import (
	"slices"
	"testing"
)

// TestWithPrimaryGroup: a RUN step's process has its primary group among
// its supplementary ones, as BuildKit's have.
func TestWithPrimaryGroup(t *testing.T) {
	for _, tc := range []struct {
		gid          uint32
		groups, want []uint32
	}{
		{0, nil, []uint32{0}},                      // root
		{1000, []uint32{100}, []uint32{1000, 100}}, // USER app, a member of users
		{100, []uint32{100}, []uint32{100}},        // USER app:users
		{65534, nil, []uint32{65534}},              // USER nobody
	} {
		if got := withPrimaryGroup(tc.gid, tc.groups); !slices.Equal(got, tc.want) {
			t.Errorf("withPrimaryGroup(%d, %v) = %v, want %v", tc.gid, tc.groups, got, tc.want)
		}
	}
}

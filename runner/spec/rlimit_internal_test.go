package spec

import (
	"os"
	"testing"
)

func TestNofileLimit(t *testing.T) {
	for _, tc := range []struct {
		hard     uint64
		canRaise bool
		want     uint64
	}{
		{hard: 20000, canRaise: true, want: DefaultNOFILE},
		{hard: 20000, canRaise: false, want: 20000},
		{hard: 1 << 21, canRaise: false, want: DefaultNOFILE},
		{hard: DefaultNOFILE, canRaise: false, want: DefaultNOFILE},
	} {
		if got := nofileLimit(tc.hard, tc.canRaise); got != tc.want {
			t.Errorf("nofileLimit(%d, %v) = %d, want %d", tc.hard, tc.canRaise, got, tc.want)
		}
	}
	// No kernel has capability 63; root has CAP_CHOWN (bit 0), which the
	// layer store needs anyway.
	if hasCapability(63) {
		t.Error("hasCapability(63) is true")
	}
	if os.Geteuid() == 0 && !hasCapability(0) {
		t.Error("root without CAP_CHOWN, or CapEff not parsed")
	}
}

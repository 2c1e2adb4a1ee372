package pull

import (
	"errors"
	"runtime"
	"testing"
)

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64":      "linux/amd64",
		"linux/amd64/v1":   "linux/amd64",
		"linux/x86_64":     "linux/amd64",
		"linux/arm64":      "linux/arm64/v8",
		"linux/aarch64":    "linux/arm64/v8",
		"linux/arm64/8":    "linux/arm64/v8",
		"linux/arm":        "linux/arm/v7",
		"linux/armhf":      "linux/arm/v7",
		"linux/armel":      "linux/arm/v6",
		"Linux/ARM/v6":     "linux/arm/v6",
		"windows/amd64":    "windows/amd64",
		"linux/riscv64":    "linux/riscv64",
		" linux/ppc64le  ": "linux/ppc64le",
		"linux/arm64/v8.2": "linux/arm64/v8.2",
	} {
		p, err := ParsePlatform(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "linux", "amd64", "linux/", "/amd64", "linux/arm/v7/x", "linux//v7"} {
		if _, err := ParsePlatform(in); !errors.Is(err, ErrInvalidPlatform) {
			t.Errorf("ParsePlatform(%q): err = %v, want ErrInvalidPlatform", in, err)
		}
	}
}

func TestMatchRank(t *testing.T) {
	p := func(s string) Platform {
		t.Helper()
		pl, err := ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		return pl
	}
	for _, tc := range []struct {
		want, have string
		ok         bool
		rank       int
	}{
		{"linux/amd64", "linux/amd64", true, 0},
		{"linux/amd64", "linux/arm64", false, 0},
		{"linux/amd64", "windows/amd64", false, 0},
		{"linux/arm64", "linux/arm64/v8", true, 0},
		{"linux/arm/v7", "linux/arm/v6", true, 10},
		{"linux/arm/v7", "linux/arm/v5", true, 20},
		{"linux/arm/v6", "linux/arm/v7", false, 0},
		{"linux/arm/v8", "linux/arm/v7", true, 10},
		{"linux/amd64/v3", "linux/amd64", true, 20},
		{"linux/amd64", "linux/amd64/v2", false, 0},
		{"linux/arm64/v8.2", "linux/arm64", true, 2},
		{"linux/arm64", "linux/arm64/v9", false, 0},
		{"linux/riscv64", "linux/riscv64/rva22", false, 0},
	} {
		rank, ok := matchRank(p(tc.want), p(tc.have))
		if ok != tc.ok || (ok && rank != tc.rank) {
			t.Errorf("matchRank(%s, %s) = %d, %t; want %d, %t", tc.want, tc.have, rank, ok, tc.rank, tc.ok)
		}
	}
}

func TestHostPlatform(t *testing.T) {
	h := HostPlatform()
	if h.OS != runtime.GOOS {
		t.Errorf("OS %q, want %q", h.OS, runtime.GOOS)
	}
	switch runtime.GOARCH {
	case "arm64":
		if h.Variant != "v8" {
			t.Errorf("arm64 host variant %q, want v8", h.Variant)
		}
	case "amd64":
		if h.Architecture != "amd64" || h.Variant != "" {
			t.Errorf("amd64 host: %v", h)
		}
	}
}

func TestARMVariant(t *testing.T) {
	for in, want := range map[string]string{
		"processor\t: 0\nCPU architecture: 7\nCPU variant\t: 0x0\n": "v7",
		"CPU architecture: 8\n":     "v8",
		"CPU architecture: AArch64": "v8",
		"CPU architecture: 5TEJ":    "v5",
		"CPU architecture: 6":       "v6",
		"model name: something":     "",
		"CPU architecture: ???":     "",
	} {
		if got := armVariant(in); got != want {
			t.Errorf("armVariant(%q) = %q, want %q", in, got, want)
		}
	}
}

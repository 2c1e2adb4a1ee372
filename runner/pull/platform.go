package pull

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is what an image is built for, as in an index entry's platform or an image
// config: an OS, a CPU architecture and, for some architectures, a variant. Values use
// the GOOS/GOARCH vocabulary of the image spec ("linux", "arm64", "v8").
type Platform struct {
	OS           string
	Architecture string
	Variant      string
}

// ParsePlatform parses os/architecture[/variant], as in "linux/amd64" or
// "linux/arm64/v8". Common aliases are normalized ("x86_64" is amd64, "aarch64" is arm64,
// "armhf" is arm/v7), and so are default variants (arm64 means arm64/v8, arm means
// arm/v7). Errors wrap ErrInvalidPlatform.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, fmt.Errorf("%w: %q: want os/architecture[/variant], as in linux/arm64/v8", ErrInvalidPlatform, s)
	}
	for _, p := range parts {
		if p == "" {
			return Platform{}, fmt.Errorf("%w: %q has an empty component", ErrInvalidPlatform, s)
		}
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p.Normalize(), nil
}

// String returns os/architecture[/variant].
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize returns p with lower-case fields, architecture aliases replaced by their
// GOARCH names and variants in the v<N> form with defaults filled in: arm64 without a
// variant is arm64/v8, arm without one is arm/v7, and amd64/v1 is plain amd64.
func (p Platform) Normalize() Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "i386", "i686", "x86":
		p.Architecture = "386"
	case "aarch64":
		p.Architecture = "arm64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	}
	if p.Variant != "" && p.Variant[0] >= '0' && p.Variant[0] <= '9' {
		p.Variant = "v" + p.Variant // "8" is v8
	}
	switch p.Architecture {
	case "arm64":
		if p.Variant == "" {
			p.Variant = "v8"
		}
	case "arm":
		if p.Variant == "" {
			p.Variant = "v7"
		}
	case "amd64":
		if p.Variant == "v1" {
			p.Variant = ""
		}
	}
	return p
}

// HostPlatform is the platform of the running system: runtime.GOOS and runtime.GOARCH,
// with, on 32-bit arm, the variant of the CPU from /proc/cpuinfo (v7 if unknown).
func HostPlatform() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
			p.Variant = armVariant(string(b))
		}
	}
	return p.Normalize()
}

// armVariant returns the variant ("v6", "v7", "v8") of the "CPU architecture" line of
// /proc/cpuinfo contents, or "" when there is none.
func armVariant(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(key) != "CPU architecture" {
			continue
		}
		value = strings.TrimSpace(value)
		if value == "AArch64" || value == "aarch64" {
			return "v8"
		}
		// "7", or older kernels' "5TEJ"
		if n, err := strconv.Atoi(strings.TrimRightFunc(value, func(r rune) bool { return r < '0' || r > '9' })); err == nil {
			return "v" + strconv.Itoa(n)
		}
		return ""
	}
	return ""
}

// variantVersion parses "v8" or "v8.2" (after Normalize) into 82-style comparable numbers:
// major*10+minor. ok is false for anything else.
func variantVersion(v string) (n int, ok bool) {
	if v == "" {
		return 10, true // amd64 without variant is v1
	}
	rest, found := strings.CutPrefix(v, "v")
	if !found {
		return 0, false
	}
	majStr, minStr, dotted := strings.Cut(rest, ".")
	maj, err := strconv.Atoi(majStr)
	if err != nil || maj < 0 || maj > 99 {
		return 0, false
	}
	minor := 0
	if dotted {
		if minor, err = strconv.Atoi(minStr); err != nil || minor < 0 || minor > 9 {
			return 0, false
		}
	}
	return maj*10 + minor, true
}

// matchRank says whether an image for have runs on want, and how good a choice it is:
// 0 for the same platform, larger for older variants that still run (arm/v6 on an
// arm/v7 machine, amd64 on an amd64/v3 machine, arm64/v8 on arm64/v8.2). Both must be
// normalized. OS and architecture must be equal.
func matchRank(want, have Platform) (rank int, ok bool) {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return 0, false
	}
	if want.Variant == have.Variant {
		return 0, true
	}
	switch want.Architecture {
	case "arm", "arm64", "amd64":
		w, okW := variantVersion(want.Variant)
		h, okH := variantVersion(have.Variant)
		if okW && okH && h <= w {
			return w - h, true
		}
	}
	return 0, false
}

// descriptorPlatform is the normalized platform of an index entry; ok is false when it
// has none.
func descriptorPlatform(d ocispec.Descriptor) (Platform, bool) {
	if d.Platform == nil {
		return Platform{}, false
	}
	return Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}.Normalize(), true
}

// MatchPlatform says whether an image for have runs on want, and how good a choice it
// is (0 is the same platform; see the platform selection of Pull). Both are normalized
// first.
func MatchPlatform(want, have Platform) (rank int, ok bool) {
	return matchRank(want.Normalize(), have.Normalize())
}

package manifest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
)

func TestValidateName(t *testing.T) {
	long := strings.Repeat("a/", 127) + "a" // 255 characters
	for _, name := range []string{
		"a", "a/b", "a.b-c__d/e", "library/ubuntu", "my-org/team_x/app.v2", "a---b", "0", "a1/2b/c3",
		long, strings.Repeat("x", 255),
	} {
		if err := manifest.ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q): %v", name, err)
		}
	}
	for _, tc := range []struct{ name, msg string }{
		{"", "empty"},
		{"A", "uppercase 'A'"},
		{"library/Ubuntu", "uppercase 'U'"},
		{"a/../b", `component ".." starts with '.'`},
		{"..", `component ".." starts with '.'`},
		{".", `starts with '.'`},
		{"a//b", "empty path component"},
		{"_a", "starts with '_'"},
		{"a/_b", "starts with '_'"},
		{"-a", "starts with '-'"},
		{"a-", "ends with '-'"},
		{"a.", "ends with '.'"},
		{"a/", "ends with '/'"},
		{"/a", "starts with '/'"},
		{"/", "starts with '/'"},
		{"a%2fb", "contains '%'"},
		{"a%2e%2e", "contains '%'"},
		{`a\b`, `contains '\\'`},
		{"a b", "contains ' '"},
		{"a:b", "contains ':'"},
		{"a@b", "contains '@'"},
		{"é", "non-ASCII"},
		{long + "a", "256 characters long, at most 255"},
		{strings.Repeat("a", 10000), "10000 characters long"},
		{"a..b", `separator ".."`},
		{"a___b", `separator "___"`},
		{"a._b", `separator "._"`},
		{"a-.b", `separator "-."`},
		{"a_-b", `separator "_-"`},
	} {
		err := manifest.ValidateName(tc.name)
		if !errors.Is(err, manifest.ErrNameInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrNameInvalid", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ValidateName(%q) = %q, want it to mention %q", tc.name, err, tc.msg)
		}
		if len(err.Error()) > 400 {
			t.Errorf("ValidateName(%q): message is %d bytes long", tc.name[:10], len(err.Error()))
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, tag := range []string{
		"latest", "v1.2.3", "_internal", "1", "A", "sha256-" + strings.Repeat("a", 64) + ".sig",
		"release_2024-05-01", strings.Repeat("t", 128),
	} {
		if err := manifest.ValidateTag(tag); err != nil {
			t.Errorf("ValidateTag(%q): %v", tag, err)
		}
	}
	for _, tc := range []struct{ tag, msg string }{
		{"", "empty"},
		{".hidden", "must start with"},
		{"-x", "must start with"},
		{"a/b", "'/' at offset 1"},
		{"v1+build", "'+' at offset 2"},
		{"sha256:abc", "':' at offset 6"},
		{"tag with space", "' ' at offset 3"},
		{"é", "must start with"},
		{"aé", "offset 1"},
		{strings.Repeat("t", 129), "129 characters long, at most 128"},
	} {
		err := manifest.ValidateTag(tc.tag)
		if !errors.Is(err, manifest.ErrTagInvalid) {
			t.Errorf("ValidateTag(%q) = %v, want ErrTagInvalid", tc.tag, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ValidateTag(%q) = %q, want it to mention %q", tc.tag, err, tc.msg)
		}
	}
}

func TestParseDigest(t *testing.T) {
	for _, s := range []string{dCfg, dEmpty, dSHA512, string(digest.FromString("x"))} {
		d, err := manifest.ParseDigest(s)
		if err != nil || string(d) != s {
			t.Errorf("ParseDigest(%q) = %q, %v", s, d, err)
		}
	}
	if !digest.SHA256.Available() || !digest.SHA512.Available() {
		t.Error("sha256 or sha512 is not available to go-digest")
	}
	hex64 := dCfg[len("sha256:"):]
	for _, tc := range []struct{ s, msg string }{
		{"", "empty"},
		{"sha256:", "empty sha256 hex part"},
		{"sha512:", "empty sha512 hex part"},
		{"sha384:" + strings.Repeat("ab", 48), `algorithm "sha384" is not supported`},
		{"md5:d41d8cd98f00b204e9800998ecf8427e", `algorithm "md5" is not supported`},
		{"blake3:" + hex64, `algorithm "blake3" is not supported`},
		{"SHA256:" + hex64, `"SHA256" is not a digest algorithm`},
		{"sha256:" + strings.ToUpper(hex64), "hex must be lowercase, found 'B' at offset 7"},
		{"sha256:" + hex64[:63], "needs 64 hex characters, found 63"},
		{"sha256:" + hex64 + "0", "needs 64 hex characters, found 65"},
		{"sha512:" + hex64, "needs 128 hex characters, found 64"},
		{"sha256:" + hex64[:60] + "xyz0", "'x' at offset 67 is not a hex digit"},
		{"sha256:" + hex64[:63] + "=", "is not a hex digit"},
		{hex64, "no algorithm prefix"},
		{"garbage", "no algorithm prefix"},
		{":" + hex64, "is not a digest algorithm"},
		{"sha256:" + hex64 + ":x", "is not a hex digit"},
		{" sha256:" + hex64, "is not a digest algorithm"},
	} {
		d, err := manifest.ParseDigest(tc.s)
		if !errors.Is(err, manifest.ErrDigestInvalid) || d != "" {
			t.Errorf("ParseDigest(%q) = %q, %v; want ErrDigestInvalid", tc.s, d, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseDigest(%q) = %q, want it to mention %q", tc.s, err, tc.msg)
		}
	}
}

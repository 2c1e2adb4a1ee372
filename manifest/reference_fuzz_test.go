package manifest_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
)

// The grammars of the OCI distribution spec, written as its regular
// expressions: the oracle the hand-written validators must agree with.
var (
	nameGrammar   = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagGrammar    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestGrammar = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

// FuzzValidateName checks that ValidateName accepts exactly the names of
// the spec's grammar up to 255 characters, and refuses others with an error
// wrapping ErrNameInvalid.
func FuzzValidateName(f *testing.F) {
	// Names as docker, containerd and crane push them, and near misses.
	for _, s := range []string{"busybox", "library/debian", "multiarch", "team/app.v2", "a__b", "a---b", "a___b",
		"a/b/c/d", "A/b", "a//b", "/a", "a/", "a.-b", "-a", "a_", "a:b", "a@b", "ünï", strings.Repeat("a/", 128) + "a", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := manifest.ValidateName(name)
		want := len(name) <= 255 && nameGrammar.MatchString(name)
		if (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v; the grammar says valid=%v", name, err, want)
		}
		if err != nil && !errors.Is(err, manifest.ErrNameInvalid) {
			t.Fatalf("ValidateName(%q): %v does not wrap ErrNameInvalid", name, err)
		}
	})
}

// FuzzValidateTag checks ValidateTag against the spec's tag grammar.
func FuzzValidateTag(f *testing.F) {
	for _, s := range []string{"latest", "1.36.1-musl", "v2", "_x", ".hidden", "-x", "a:b", "sha256-" + strings.Repeat("a", 64) + ".sig",
		strings.Repeat("t", 128), strings.Repeat("t", 129), "", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		err := manifest.ValidateTag(tag)
		if want := tagGrammar.MatchString(tag); (err == nil) != want {
			t.Fatalf("ValidateTag(%q) = %v; the grammar says valid=%v", tag, err, want)
		}
		if err != nil && !errors.Is(err, manifest.ErrTagInvalid) {
			t.Fatalf("ValidateTag(%q): %v does not wrap ErrTagInvalid", tag, err)
		}
	})
}

// FuzzParseDigest checks that ParseDigest accepts exactly lowercase sha256
// and sha512 digests, returns them unchanged, agrees with go-digest on what
// it accepts, and refuses the rest with an error wrapping ErrDigestInvalid.
func FuzzParseDigest(f *testing.F) {
	// The test images' manifests and blobs, as they appear in URLs and bodies.
	for _, s := range []string{
		"sha256:16093e154d08be89494e10a938eae1fa646050eb5965f2d5d860e809b04a2b3f",
		"sha256:0f2bd2850d663ab82d103985d4204bd04feb1242fbcc463a3ac66e9bfd115fba",
		"sha256:C18D34D104B5D8BA01266619F36EE688BEF089524734296773AD9298788C5071",
		"sha512:" + strings.Repeat("ab", 64), "sha384:" + strings.Repeat("a", 96), "sha256:", "sha256", ":abc",
		"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "sha256:" + strings.Repeat("a", 65), "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := manifest.ParseDigest(s)
		if want := digestGrammar.MatchString(s); (err == nil) != want {
			t.Fatalf("ParseDigest(%q) = %v; valid=%v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, manifest.ErrDigestInvalid) {
				t.Fatalf("ParseDigest(%q): %v does not wrap ErrDigestInvalid", s, err)
			}
			return
		}
		if string(d) != s {
			t.Fatalf("ParseDigest(%q) = %q", s, d)
		}
		if parsed, err := digest.Parse(s); err != nil || parsed != d {
			t.Fatalf("go-digest refuses %q that ParseDigest accepts: %v", s, err)
		}
	})
}

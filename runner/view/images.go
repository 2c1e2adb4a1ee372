package view

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/format"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/pull"
)

// ImagesFormat returns `berth images`' default --format: docker's columns,
// with PLATFORM, and DIGEST with digests.
func ImagesFormat(digests bool) string {
	if digests {
		return "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.Platform}}\t{{.CreatedSince}}\t{{.Size}}"
	}
	return "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Platform}}\t{{.CreatedSince}}\t{{.Size}}"
}

// ImageHeaders are the column headers of ImageRow's fields.
var ImageHeaders = map[string]string{
	"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID", "Platform": "PLATFORM",
	"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
}

// none is what docker prints for a missing repository, tag or digest.
const none = "<none>"

// ImageRow is one line of `berth images`, its fields as printed: one per
// reference of an image, and one with "<none>" for an image no reference
// names.
type ImageRow struct {
	Repository string
	Tag        string
	// Digest is the digest of the manifest the reference was pulled or
	// tagged by (an index for a multi-platform image).
	Digest string
	// ID is the image ID, truncated unless NoTrunc.
	ID       string
	Platform string
	// CreatedSince is the age of the image config's creation time
	// ("2 weeks ago"), CreatedAt that time.
	CreatedSince string
	CreatedAt    string
	// Size is the uncompressed size of the layers ("80.3MB").
	Size string
}

// ImageRowOptions are ImageRows' options.
type ImageRowOptions struct {
	// Now is the time CreatedSince counts from.
	Now time.Time
	// NoTrunc prints whole IDs.
	NoTrunc bool
	// Filter keeps the rows it matches.
	Filter ImageFilter
}

// ImageRows returns the rows of `berth images` for imgs, in their order.
// manifests is image.Store.ReferenceManifests.
func ImageRows(imgs []image.Image, manifests map[string]digest.Digest, o ImageRowOptions) []ImageRow {
	var rows []ImageRow
	for _, img := range imgs {
		if !o.Filter.matchImage(img) {
			continue
		}
		refs := img.References
		if len(refs) == 0 {
			if o.Filter.dangling != nil && !*o.Filter.dangling || len(o.Filter.references) > 0 {
				continue
			}
			refs = []string{""}
		} else if o.Filter.dangling != nil && *o.Filter.dangling {
			continue
		}
		for _, ref := range refs {
			if ref != "" && !o.Filter.matchReference(ref) {
				continue
			}
			rows = append(rows, imageRow(img, ref, manifests, o))
		}
	}
	return rows
}

func imageRow(img image.Image, ref string, manifests map[string]digest.Digest, o ImageRowOptions) ImageRow {
	r := ImageRow{Repository: none, Tag: none, Digest: none, Platform: img.Platform.String(), Size: format.Size(img.Size)}
	d := img.ManifestDigest
	if ref != "" {
		d = manifests[ref]
		if pr, err := pull.ParseReference(ref, ""); err == nil {
			r.Repository = pr.Name()
			if pr.Tag != "" {
				r.Tag = pr.Tag
			}
			if pr.Digest != "" {
				d = pr.Digest
			}
		} else {
			r.Repository = ref
		}
	}
	if d != "" {
		r.Digest = d.String()
	}
	r.ID = img.ID.String()
	if !o.NoTrunc {
		r.ID = format.TruncateID(r.ID)
	}
	r.CreatedSince = "N/A"
	if c := img.Config.Created; c != nil {
		r.CreatedSince = format.Ago(o.Now, *c)
		r.CreatedAt = c.Local().Truncate(time.Second).String()
	}
	return r
}

// ImageFilter is the --filter of `berth images`. The zero value keeps
// everything.
type ImageFilter struct {
	// DefaultRegistry, when set, lets a reference pattern leave out that
	// registry ("team/*" matches host/team/app:1 when host is the default).
	DefaultRegistry string

	dangling   *bool
	references []string
	labels     []string
}

// ParseImageFilters parses --filter values, docker's: dangling=true|false
// (images no reference names, or the others), reference=PATTERN (the
// references that match PATTERN, path.Match syntax, against the
// reference with or without its tag: "team/*", "*:1.0"), label=KEY or
// label=KEY=VALUE. Values of one key are alternatives; different keys must
// all match. Errors wrap ErrInvalidFilter.
func ParseImageFilters(args []string) (ImageFilter, error) {
	var f ImageFilter
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok || value == "" {
			return ImageFilter{}, fmt.Errorf("%w: %q: want KEY=VALUE", ErrInvalidFilter, a)
		}
		switch strings.ToLower(key) {
		case "dangling":
			var b bool
			switch strings.ToLower(value) {
			case "true", "1":
				b = true
			case "false", "0":
			default:
				return ImageFilter{}, fmt.Errorf("%w: %q: dangling is true or false", ErrInvalidFilter, a)
			}
			if f.dangling != nil && *f.dangling != b {
				return ImageFilter{}, fmt.Errorf("%w: dangling=true and dangling=false together", ErrInvalidFilter)
			}
			f.dangling = &b
		case "reference":
			if _, err := path.Match(value, ""); err != nil {
				return ImageFilter{}, fmt.Errorf("%w: %q: %v", ErrInvalidFilter, a, err)
			}
			f.references = append(f.references, value)
		case "label":
			f.labels = append(f.labels, value)
		default:
			return ImageFilter{}, fmt.Errorf("%w: %q: the keys are dangling, reference and label", ErrInvalidFilter, key)
		}
	}
	return f, nil
}

// matchImage applies the label filter.
func (f ImageFilter) matchImage(img image.Image) bool {
	if len(f.labels) == 0 {
		return true
	}
	labels := img.Config.Config.Labels
	for _, l := range f.labels {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := labels[k]
		if ok && (!hasValue || got == v) {
			return true
		}
	}
	return false
}

// matchReference applies the reference filter to one stored reference.
func (f ImageFilter) matchReference(ref string) bool {
	if len(f.references) == 0 {
		return true
	}
	r, err := pull.ParseReference(ref, "")
	if err != nil {
		return false
	}
	names := []string{r.Name()}
	if f.DefaultRegistry != "" {
		if reg, err := pull.NormalizeRegistry(f.DefaultRegistry); err == nil && reg == r.Registry {
			names = append(names, r.Repository)
		}
	}
	var candidates []string
	for _, n := range names {
		full := n
		if r.Tag != "" {
			full += ":" + r.Tag
		}
		if r.Digest != "" {
			full += "@" + r.Digest.String()
		}
		candidates = append(candidates, full, n)
	}
	for _, p := range f.references {
		for _, c := range candidates {
			if ok, _ := path.Match(p, c); ok {
				return true
			}
		}
	}
	return false
}

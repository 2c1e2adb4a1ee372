package build

import (
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestFillHistory: layers a base image's history does not account for get
// entries appended, described as BuildKit's exporter describes them.
func TestFillHistory(t *testing.T) {
	const exp = "buildkit.exporter.image.v0"
	h := func(by string, empty bool) ocispec.History {
		return ocispec.History{CreatedBy: by, EmptyLayer: empty}
	}
	pulled := "pulled from host/multiarch:latest@sha256:0f2b"
	for _, tc := range []struct {
		name    string
		history []ocispec.History
		descs   []string
		want    []ocispec.History
	}{
		{"accounted for", []ocispec.History{h("base", false), h("ENV a=b", true), h("RUN x", false)},
			[]string{pulled, "[2/2] RUN x"},
			[]ocispec.History{h("base", false), h("ENV a=b", true), h("RUN x", false)}},
		// A base image of two layers and no history, and one COPY: the
		// COPY's entry counts for the first layer, entries for the
		// second base layer and the COPY's layer follow it.
		{"base without history", []ocispec.History{h("COPY /picked / # buildkit", false)},
			[]string{pulled, pulled, "[stage-1 2/2] COPY --from=tool /picked /"},
			[]ocispec.History{h("COPY /picked / # buildkit", false),
				{CreatedBy: pulled, Comment: exp}, {CreatedBy: "[stage-1 2/2] COPY --from=tool /picked /", Comment: exp}}},
		{"no description", nil, []string{""},
			[]ocispec.History{{CreatedBy: "created by buildkit", Comment: exp}}},
		{"more entries than layers", []ocispec.History{h("a", false), h("b", false), h("c", true), h("d", false)},
			[]string{pulled},
			[]ocispec.History{h("a", false), h("b", true), h("c", true), h("d", true)}},
	} {
		if got := fillHistory(tc.history, tc.descs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

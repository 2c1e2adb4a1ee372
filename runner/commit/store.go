package commit

import (
	"encoding/json"
	"fmt"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/berth-registry/berth/runner/image"
)

// record stores cfg and a manifest of f naming it, baseLayers and the new
// layer (none when add is nil), and records the image under refs
// (image.Store.RecordNew).
func record(images *image.Store, f image.Format, cfg *dockerspec.DockerOCIImage, baseLayers []image.Layer, add *image.Layer, refs []string) (image.Image, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return image.Image{}, fmt.Errorf("commit: encoding the config: %w", err)
	}
	ls := append([]image.Layer(nil), baseLayers...)
	if add != nil {
		ls = append(ls, *add)
	}
	return images.RecordNew(f, raw, ls, refs...)
}

// refsOf is the reference list Record takes for an optional reference.
func refsOf(ref string) []string {
	if ref == "" {
		return nil
	}
	return []string{ref}
}

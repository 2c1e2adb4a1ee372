package imagediff

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Image is one image as Compare sees it.
type Image struct {
	// Name says which image a difference is about ("only in NAME"); Load
	// sets it to the path it read, callers may change it.
	Name string
	// Config is the top level of the image config blob, each field as its
	// JSON ("config", "history", "rootfs", "architecture", ...).
	Config map[string]json.RawMessage
	// Files is the flattened filesystem by absolute path ("/etc/passwd");
	// the root directory itself is not in it.
	Files map[string]*File
	// Layers is the manifest's layer count.
	Layers int
}

// ErrFormat is wrapped by every error about an input that is not one
// readable image.
var ErrFormat = errors.New("not a readable image")

// Load reads the image at p: an OCI image layout directory, a tar of one,
// or a docker-archive tar (manifest.json). The layout must hold exactly
// one image (an index with one platform's manifest counts as one; a
// BuildKit attestation manifest, platform unknown/unknown, is ignored).
func Load(p string) (*Image, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	dir := p
	if !fi.IsDir() {
		tmp, err := os.MkdirTemp("", "imagediff-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := extractArchive(p, tmp); err != nil {
			return nil, err
		}
		dir = tmp
	}
	img, err := loadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	img.Name = p
	return img, nil
}

// extractArchive writes the regular files of the tar at src under dir,
// refusing names that climb out of it.
func extractArchive(src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w: %v", src, ErrFormat, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" || strings.Contains(hdr.Name, "..") {
			return fmt.Errorf("%s: %w: entry %q", src, ErrFormat, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: entry %s: %w", src, hdr.Name, err)
		}
	}
}

// descriptor is the part of an OCI descriptor Load reads.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

// loadDir reads the image of an OCI layout (index.json) or of an unpacked
// docker archive (manifest.json).
func loadDir(dir string) (*Image, error) {
	var configPath string
	var layerPaths []string
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		m, err := findManifest(dir, "index.json", filepath.Join(dir, "index.json"), 0)
		if err != nil {
			return nil, err
		}
		configPath = blobPath(dir, m.Config.Digest)
		for _, l := range m.Layers {
			layerPaths = append(layerPaths, blobPath(dir, l.Digest))
		}
	} else {
		var manifests []struct {
			Config string
			Layers []string
		}
		if err := readJSON(filepath.Join(dir, "manifest.json"), &manifests); err != nil {
			return nil, fmt.Errorf("%w: neither an OCI layout (index.json) nor a docker archive (manifest.json): %v", ErrFormat, err)
		}
		if len(manifests) != 1 {
			return nil, fmt.Errorf("%w: manifest.json lists %d images, want one", ErrFormat, len(manifests))
		}
		configPath = filepath.Join(dir, filepath.FromSlash(path.Clean("/"+manifests[0].Config)))
		for _, l := range manifests[0].Layers {
			layerPaths = append(layerPaths, filepath.Join(dir, filepath.FromSlash(path.Clean("/"+l))))
		}
	}
	img := &Image{Layers: len(layerPaths)}
	if err := readJSON(configPath, &img.Config); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrFormat, err)
	}
	t := newTree()
	for i, p := range layerPaths {
		if err := applyFile(t, p, i); err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, filepath.Base(p), err)
		}
	}
	img.Files = t.finish()
	return img, nil
}

// manifest is the part of an image manifest Load reads.
type manifest struct {
	Config descriptor   `json:"config"`
	Layers []descriptor `json:"layers"`
}

// findManifest follows an index (index.json or a nested one) down to its
// one image manifest.
func findManifest(dir, name, file string, depth int) (*manifest, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%w: indexes nested too deep", ErrFormat)
	}
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := readJSON(file, &idx); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
	}
	var images []descriptor
	for _, d := range idx.Manifests {
		if d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown" {
			continue // an attestation manifest
		}
		images = append(images, d)
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("%w: %s lists %d images, want one", ErrFormat, name, len(images))
	}
	d := images[0]
	switch {
	case strings.Contains(d.MediaType, "index") || strings.Contains(d.MediaType, "manifest.list"):
		return findManifest(dir, d.Digest, blobPath(dir, d.Digest), depth+1)
	case strings.Contains(d.MediaType, "manifest"):
		var m manifest
		if err := readJSON(blobPath(dir, d.Digest), &m); err != nil {
			return nil, fmt.Errorf("%w: manifest %s: %v", ErrFormat, d.Digest, err)
		}
		return &m, nil
	}
	return nil, fmt.Errorf("%w: %s: media type %q is neither a manifest nor an index", ErrFormat, name, d.MediaType)
}

// blobPath is where an OCI layout keeps the blob dgst.
func blobPath(dir, dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	return filepath.Join(dir, "blobs", filepath.Base(alg), filepath.Base(hex))
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

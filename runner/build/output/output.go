package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-registry/berth/runner/archive"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
)

// The output types.
const (
	Local  = "local"
	Tar    = "tar"
	OCI    = "oci"
	Docker = "docker"
)

// Stdout is the Dest of standard output.
const Stdout = "-"

// ErrInvalid: an --output value that is none of the forms (the message
// says which field).
var ErrInvalid = errors.New("output: invalid")

// Spec is one --output.
type Spec struct {
	Type, Dest string
}

// Parse parses an --output value (see the package doc).
func Parse(s string) (Spec, error) {
	if !strings.Contains(s, "=") {
		switch s {
		case "":
			return Spec{}, fmt.Errorf("%w: --output is empty", ErrInvalid)
		case Stdout:
			return Spec{Type: Tar, Dest: Stdout}, nil
		}
		return Spec{Type: Local, Dest: s}, nil
	}
	var sp Spec
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "type":
			sp.Type = v
		case "dest":
			sp.Dest = v
		default:
			return Spec{}, fmt.Errorf("%w: --output %q: unknown field %q (want type= and dest=)", ErrInvalid, s, k)
		}
	}
	switch sp.Type {
	case Local, Tar, OCI, Docker:
	default:
		return Spec{}, fmt.Errorf("%w: --output %q: type %q: want local, tar, oci or docker", ErrInvalid, s, sp.Type)
	}
	if sp.Dest == "" {
		return Spec{}, fmt.Errorf("%w: --output %q: no dest", ErrInvalid, s)
	}
	return sp, nil
}

// Write writes img (named name: a reference it has, or its ID) as sp
// says; stdout is where a Dest of "-" goes. tmpDir is where a tar of the
// filesystem is flattened first (a directory of the state directory's
// filesystem).
func Write(ctx context.Context, images *image.Store, img image.Image, name string, sp Spec, stdout io.Writer, tmpDir string) error {
	switch {
	case sp.Type == Local && sp.Dest != Stdout:
		return writeLocal(ctx, images, img, sp.Dest)
	case sp.Type == OCI || sp.Type == Docker:
		return toFile(sp.Dest, stdout, func(w io.Writer) error {
			return archive.Save(ctx, images, w, []string{name})
		})
	}
	return toFile(sp.Dest, stdout, func(w io.Writer) error { return writeTar(ctx, images, img, w, tmpDir) })
}

// writeLocal flattens img's layers into dir.
func writeLocal(ctx context.Context, images *image.Store, img image.Image, dir string) error {
	ls, err := storeLayers(images, img)
	if err != nil {
		return err
	}
	if err := images.LayerStore().Flatten(ctx, ls, dir); err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	return nil
}

// writeTar writes img's filesystem as one tar: flattened into a
// temporary directory, then written from it.
func writeTar(ctx context.Context, images *image.Store, img image.Image, w io.Writer, tmpDir string) error {
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(tmpDir, "output-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	if err := writeLocal(ctx, images, img, root); err != nil {
		return err
	}
	_, err = layers.WriteTree(ctx, w, root, layers.WriteOptions{})
	return err
}

// storeLayers are the layer store's layers of img, base first.
func storeLayers(images *image.Store, img image.Image) ([]layers.Layer, error) {
	out := make([]layers.Layer, len(img.Layers))
	for i, l := range img.Layers {
		sl, err := images.LayerStore().Get(l.DiffID)
		if err != nil {
			return nil, err
		}
		out[i] = sl
	}
	return out, nil
}

// toFile runs write into stdout for "-", else into dest (WriteFile).
func toFile(dest string, stdout io.Writer, write func(io.Writer) error) error {
	if dest == Stdout {
		return write(stdout)
	}
	return WriteFile(dest, write)
}

// WriteFile runs write into a temporary file beside dest, renamed to dest
// (mode 0644) once write succeeded: dest is never seen half written.
func WriteFile(dest string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", dest, err)
	}
	return os.Rename(tmp.Name(), dest)
}

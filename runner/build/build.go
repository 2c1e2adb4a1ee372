package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/patternmatcher"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-registry/berth/runner/build/dockerfile"
	"github.com/berth-registry/berth/runner/container"
	"github.com/berth-registry/berth/runner/image"
	"github.com/berth-registry/berth/runner/layers"
	"github.com/berth-registry/berth/runner/pull"
	"github.com/berth-registry/berth/runner/spec"
)

// SourceDateEpochArg is the build arg (and environment variable) of a
// reproducible build's time, never warned about as unused.
const SourceDateEpochArg = "SOURCE_DATE_EPOCH"

// Names in the build directory (drawn in doc.go).
const (
	buildDir = "build"
	cacheDir = "cache"
	tmpDir   = "tmp"
)

// Options are Build's options: `berth build`'s flags.
type Options struct {
	// Dockerfile is the Dockerfile's content; DockerfileName its name in
	// messages.
	Dockerfile     []byte
	DockerfileName string
	// ContextDir is the build context; "" builds without one (a
	// Dockerfile from stdin), where COPY and ADD find nothing.
	ContextDir string
	// Ignore are the .dockerignore patterns of the context.
	Ignore []string
	// Convert holds the build args, the target, the default network of
	// RUN steps and the labels (dockerfile.Options; Name and Platform
	// are filled in).
	Convert dockerfile.Options
	// NoCache runs every step, without looking in the cache (the
	// layers made are still recorded in it).
	NoCache bool
	// Tags name the image (references, completed as image.Store
	// completes them); none leaves it dangling.
	Tags []string
	// Resolve returns a base image (FROM, COPY --from): from the store,
	// else pulled.
	Resolve func(ctx context.Context, ref string) (image.Image, error)
	// Progress receives the plain progress output; nil prints nothing.
	Progress io.Writer
	// Warn receives warnings (unused build args); nil drops them.
	Warn func(msg string)
	// Secrets are the values of --secret by ID, for RUN
	// --mount=type=secret; they are never in a layer, the history or
	// the cache.
	Secrets map[string][]byte
	// SourceDateEpoch, when set, makes the build reproducible: the
	// config's and new history entries' times take its value, and file
	// times after it are written as it in the layers.
	SourceDateEpoch *time.Time
	// CacheFrom are caches looked in when the local cache misses a step.
	CacheFrom []CacheSource
	// CacheTo receive the build's steps once the image is recorded.
	CacheTo []CacheTarget
}

// Build builds the image opts.Dockerfile describes into images and
// names it by opts.Tags. The plan (dockerfile.Convert) is run stage by
// stage: each filesystem step in a fresh overlay of its parent's layers,
// whose upper directory becomes the step's layer (or, on a cache hit, the
// layer the cache names). A failure tags nothing and leaves no mount,
// container or scratch directory; cancelling ctx kills a running step.
func Build(ctx context.Context, images *image.Store, opts Options) (image.Image, error) {
	for _, t := range opts.Tags {
		r, err := pull.ParseReference(t, images.DefaultRegistry)
		if err != nil {
			return image.Image{}, err
		}
		if r.Digest != "" {
			return image.Image{}, fmt.Errorf("%w: %s: a built image is named by a tag, not a digest", pull.ErrInvalidReference, t)
		}
	}
	if err := images.LayerStore().OverlaySupported(); err != nil {
		return image.Image{}, fmt.Errorf("%w: berth build needs overlayfs over the layer store: %v", ErrUnsupported, err)
	}
	b := &builder{
		images: images, opts: opts, prog: &progress{w: opts.Progress},
		dir:  filepath.Join(images.Dir(), buildDir),
		used: map[string]image.Image{}, pulledAs: map[string]string{},
	}
	b.cache = &cache{dir: filepath.Join(b.dir, cacheDir), images: images}
	b.remote = &remote{dir: filepath.Join(b.dir, httpDir), client: http.DefaultClient}
	if err := os.MkdirAll(filepath.Join(b.dir, tmpDir), 0o700); err != nil {
		return image.Image{}, fmt.Errorf("build: %w", err)
	}
	b.cleanTemp()

	hp := pull.HostPlatform()
	conv := opts.Convert
	conv.Name = opts.DockerfileName
	conv.Platform = ocispec.Platform{OS: hp.OS, Architecture: hp.Architecture, Variant: hp.Variant}
	plan, err := dockerfile.Convert(opts.Dockerfile, conv, func(ref string) (dockerfile.Image, error) {
		img, err := opts.Resolve(ctx, ref)
		if err != nil {
			return dockerfile.Image{}, err
		}
		var cfg dockerspec.DockerOCIImage
		if err := json.Unmarshal(img.RawConfig, &cfg); err != nil {
			return dockerfile.Image{}, fmt.Errorf("%w: config of %s: %v", image.ErrCorrupt, ref, err)
		}
		b.used[img.ID.String()] = img
		b.pulledAs[ref] = b.pulledFrom(ref)
		return dockerfile.Image{ID: img.ID, Config: cfg}, nil
	})
	if err != nil {
		return image.Image{}, err
	}
	if unused := slices.DeleteFunc(plan.UnusedArgs, func(k string) bool { return k == SourceDateEpochArg }); len(unused) > 0 && opts.Warn != nil {
		opts.Warn(fmt.Sprintf("One or more build-args %v were not consumed", unused))
	}
	if opts.ContextDir != "" {
		var pm *patternmatcher.PatternMatcher
		if len(opts.Ignore) > 0 {
			if pm, err = patternmatcher.New(opts.Ignore); err != nil {
				return image.Image{}, fmt.Errorf("%w: .dockerignore: %v", ErrInvalid, err)
			}
		}
		if b.context, err = openRoot(opts.ContextDir, pm, true); err != nil {
			return image.Image{}, err
		}
		defer b.context.close()
		if b.context.abs, err = filepath.Abs(opts.ContextDir); err != nil {
			return image.Image{}, fmt.Errorf("build: %w", err)
		}
		b.context.hashes = loadHashes(b.dir)
		// Remembered hashes only spare reading files: failing to save
		// them costs the next build time, not correctness.
		defer b.context.hashes.save()
	}

	release, err := images.Hold()
	if err != nil {
		return image.Image{}, err
	}
	defer release()
	b.created = time.Now().UTC()
	b.results = make([]stageResult, len(plan.Stages))
	for i, st := range plan.Stages {
		if err := b.runStage(ctx, plan, i, st); err != nil {
			return image.Image{}, err
		}
	}
	img, err := b.record(plan.Stages[len(plan.Stages)-1], b.results[len(plan.Stages)-1])
	if err != nil {
		return image.Image{}, err
	}
	return img, b.exportCache(ctx, plan)
}

// builder is one build's state.
type builder struct {
	images  *image.Store
	opts    Options
	prog    *progress
	dir     string
	cache   *cache
	remote  *remote
	context *srcRoot
	used    map[string]image.Image // base images by ID
	// pulledAs describes the layers of a base image, by the reference
	// FROM names it with (pulledFrom).
	pulledAs map[string]string
	results  []stageResult
	created  time.Time
	records  []stageRecord // the steps run or found, for CacheTo
}

// stageResult is a built stage: its layers, base first, what made each
// (fillHistory), when the layers its steps made were made, and the cache
// key of its last step.
type stageResult struct {
	layers []image.Layer
	descs  []string
	times  []time.Time
	key    string
}

// pulledFrom describes the layers of the base image ref names, as
// BuildKit's history does for layers its config's history does not
// account for: "pulled from HOST/NAME:TAG@DIGEST", DIGEST being what the
// reference resolved to in the registry (the index it was pulled
// through, else the manifest).
func (b *builder) pulledFrom(ref string) string {
	r, err := pull.ParseReference(ref, b.images.DefaultRegistry)
	if err != nil {
		return fallbackDescription
	}
	if r.Digest == "" {
		if ix, ok, err := b.images.Index(ref); err == nil && ok {
			r.Digest = ix.Digest
		} else if _, m, err := b.images.Lookup(ref); err == nil {
			r.Digest = m
		}
	}
	return "pulled from " + r.String()
}

// runStage runs the steps of stage i.
func (b *builder) runStage(ctx context.Context, plan *dockerfile.Plan, i int, st *dockerfile.Stage) error {
	total := len(st.Steps) + 1
	prefix := func(n int) string {
		if len(plan.Stages) > 1 || st.Name != "" {
			return fmt.Sprintf("[%s %d/%d]", st.DisplayName(), n, total)
		}
		return fmt.Sprintf("[%d/%d]", n, total)
	}
	var res stageResult
	switch {
	case st.BaseStage >= 0:
		base := b.results[st.BaseStage]
		res = stageResult{layers: slices.Clone(base.layers), descs: slices.Clone(base.descs), times: slices.Clone(base.times), key: base.key}
	case st.BaseImage != nil:
		img := b.used[st.BaseImage.ID.String()]
		for _, l := range img.Layers {
			if !b.images.HasBlob(l.Digest) {
				return fmt.Errorf("FROM %s: %w: layer %s (pulled by an older berth; pull it again)", st.Base, image.ErrBlobMissing, l.Digest)
			}
		}
		res = stageResult{layers: slices.Clone(img.Layers), key: "image " + img.ID.String()}
		for range img.Layers {
			res.descs = append(res.descs, b.pulledAs[st.Base])
		}
	default:
		res = stageResult{key: "scratch"}
	}
	if st.BaseStage < 0 && b.opts.SourceDateEpoch != nil {
		// Its layers' times differ from those of a build without it.
		res.key += fmt.Sprintf(" source-date-epoch=%d", b.opts.SourceDateEpoch.Unix())
	}
	v := b.prog.vertex(prefix(1) + " FROM " + st.Base)
	v.done()
	for n, step := range st.Steps {
		v := b.prog.vertex(prefix(n+2) + " " + step.Name)
		key, err := b.key(ctx, res, step)
		if err == nil {
			var e cacheEntry
			hit := false
			if !b.opts.NoCache {
				if e, hit = b.cache.get(key); !hit {
					e, hit = b.lookupSources(ctx, key)
				}
			}
			if hit {
				v.cached()
			} else {
				e = cacheEntry{Step: step.CreatedBy, Created: time.Now().UTC().Truncate(time.Second)}
				e.Layer, err = b.runStep(ctx, res.layers, step, v)
				if err == nil {
					err = b.cache.put(key, e)
					v.done()
				}
			}
			res.layers = append(res.layers, e.Layer)
			res.descs = append(res.descs, prefix(n+2)+" "+step.Name)
			res.times = append(res.times, e.Created)
			res.key = key
			if err == nil {
				b.records = append(b.records, stageRecord{stage: i, rec: CacheRecord{Key: key, Layer: e.Layer, Created: e.Created, Step: e.Step}})
			}
		}
		if err != nil {
			v.fail(err)
			where := b.opts.DockerfileName
			if where == "" {
				where = "Dockerfile"
			}
			if step.Line > 0 {
				where = fmt.Sprintf("%s:%d", where, step.Line)
			}
			return fmt.Errorf("%s %s (%s): %w", prefix(n+2), step.Name, where, err)
		}
	}
	b.results[i] = res
	return nil
}

// runKey, copyKey and workdirKey are what a step's cache key hashes.
type runKey struct {
	Args, Env      []string
	User, Dir, Net string
	Kind           string
	Mounts         []mountKey `json:",omitempty"`
}
type copyKey struct {
	Kind, CreatedBy, Dest, Chown string
	Chmod                        uint32
	Add                          bool
	From, Sources                string
	Remote                       string `json:",omitempty"`
}
type workdirKey struct {
	Kind, Dir, User string
}

// key is the cache key of step over res: its parent's key, the step with
// its arguments expanded and, for a COPY, a hash of its sources' content
// (the build context's) or the key of what they come from (a stage's
// last step, an image's ID).
func (b *builder) key(ctx context.Context, res stageResult, step dockerfile.Step) (string, error) {
	switch step.Kind {
	case dockerfile.Run:
		mk, err := b.mountKeys(step.Mounts)
		if err != nil {
			return "", err
		}
		return stepKey(res.key, runKey{Kind: "run", Args: step.Args, Env: step.Env, User: step.User, Dir: step.Dir, Net: step.Network, Mounts: mk}), nil
	case dockerfile.Workdir:
		return stepKey(res.key, workdirKey{Kind: "workdir", Dir: step.Dir, User: step.User}), nil
	}
	cs := step.Copy
	k := copyKey{Kind: "copy", CreatedBy: step.CreatedBy, Dest: cs.Dest, Chown: cs.Chown, Chmod: cs.Chmod, Add: cs.Add}
	switch {
	case cs.FromStage >= 0:
		k.From = "stage " + b.results[cs.FromStage].key
		k.Sources = strings.Join(cs.Sources, "\x00")
	case cs.FromImage != nil:
		k.From = "image " + cs.FromImage.ID.String()
		k.Sources = strings.Join(cs.Sources, "\x00")
	case len(cs.Sources) > 0:
		if b.context == nil {
			return "", fmt.Errorf("%w: %q: no build context (the Dockerfile came from stdin)", ErrNotFound, cs.Sources[0])
		}
		h, err := hashSources(b.context, cs.Sources)
		if err != nil {
			return "", err
		}
		k.From, k.Sources = "context", h
	}
	for _, c := range cs.Contents {
		k.Sources += "\x00" + c.Name + "\x00" + digest.FromString(c.Data).String()
	}
	if len(cs.URLs) > 0 {
		r, err := b.remoteKeys(ctx, cs)
		if err != nil {
			return "", err
		}
		k.Remote = r
	}
	return stepKey(res.key, k), nil
}

// slot is a step's scratch directory, tmp/<id>/, flocked through
// tmp/<id>.lock while it is used.
type slot struct {
	dir  string
	lock *os.File
	// mounts are the host mounts below dir a step made (besides rootfs
	// and src), secrets whether the secrets tmpfs is mounted, closers
	// what the step holds until it ends (cache mount locks).
	mounts  []string
	secrets bool
	closers []io.Closer
}

func (b *builder) newSlot() (*slot, error) {
	buf := make([]byte, 8)
	rand.Read(buf)
	dir := filepath.Join(b.dir, tmpDir, hex.EncodeToString(buf))
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("build: %w", err)
	}
	for _, d := range []string{"upper", "work", "rootfs", "src", "base"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			os.Remove(lock.Name())
			lock.Close()
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	return &slot{dir: dir, lock: lock}, nil
}

func (s *slot) path(name string) string { return filepath.Join(s.dir, name) }

// remove unmounts what is mounted in the slot and removes it; a slot
// where something stays mounted is left (for cleanTemp to retry) rather
// than removed through the mount.
func (s *slot) remove() {
	for _, c := range s.closers {
		c.Close()
	}
	for _, m := range []string{"rootfs", "src", "base"} {
		unmount(s.path(m))
	}
	if len(s.mounts) > 0 || s.secrets {
		if !unmountBelow(s.dir) {
			s.lock.Close()
			return
		}
	}
	os.RemoveAll(s.dir)
	os.Remove(s.lock.Name())
	s.lock.Close()
}

// unmount unmounts p if something is mounted there, lazily when busy.
func unmount(p string) {
	for {
		err := unix.Unmount(p, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EBUSY {
			unix.Unmount(p, unix.MNT_DETACH)
		}
		return
	}
}

// cleanTemp removes the slots no live build holds (a crashed build's).
func (b *builder) cleanTemp() {
	ents, err := os.ReadDir(filepath.Join(b.dir, tmpDir))
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		lp := filepath.Join(b.dir, tmpDir, e.Name())
		f, err := os.OpenFile(lp, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			// A crashed build's mounts may still be there.
			(&slot{dir: strings.TrimSuffix(lp, ".lock"), lock: f, secrets: true}).remove()
			continue
		}
		f.Close()
	}
}

// storeLayers returns the layer store's layers of ls.
func (b *builder) storeLayers(ls []image.Layer) ([]layers.Layer, error) {
	out := make([]layers.Layer, len(ls))
	for i, l := range ls {
		sl, err := b.images.LayerStore().Get(l.DiffID)
		if err != nil {
			return nil, err
		}
		out[i] = sl
	}
	return out, nil
}

// runStep runs one filesystem step over parent: in an overlay of the
// parent's layers with a fresh upper directory, which becomes the
// step's layer.
func (b *builder) runStep(ctx context.Context, parent []image.Layer, step dockerfile.Step, v *vertex) (image.Layer, error) {
	s, err := b.newSlot()
	if err != nil {
		return image.Layer{}, err
	}
	defer s.remove()
	lower, err := b.storeLayers(parent)
	if err != nil {
		return image.Layer{}, err
	}
	rootfs := s.path("rootfs")
	// A RUN step's container makes the mount points its parent lacks
	// (/dev, /proc, /sys) in upper: BuildKit's RUN layers hold them.
	mo := layers.MountOptions{NoMountpoints: step.Kind == dockerfile.Run}
	if err := b.images.LayerStore().MountWith(ctx, lower, s.path("upper"), s.path("work"), rootfs, mo); err != nil {
		return image.Layer{}, err
	}
	switch step.Kind {
	case dockerfile.Run:
		err = b.run(ctx, s, rootfs, step, v)
	case dockerfile.Workdir:
		err = workdir(rootfs, step)
	case dockerfile.Copy:
		err = b.copy(ctx, s, rootfs, step.Copy)
	}
	unmount(rootfs)
	if err != nil {
		return image.Layer{}, err
	}
	// The layer holds what changed over the parent, as BuildKit's differ
	// writes it (layers.WriteOptions.Base).
	var wo layers.WriteOptions
	if len(parent) > 0 {
		if wo.Base, err = b.mountLayers(ctx, s, "base", parent); err != nil {
			return image.Layer{}, err
		}
	}
	if b.opts.SourceDateEpoch != nil {
		wo.Clamp = *b.opts.SourceDateEpoch
	}
	// The upper directory becomes the layer's tree as it is: no second
	// extraction of the stream.
	return b.images.StoreUpper(ctx, image.FormatOCI.Layer, s.path("upper"), wo)
}

// run runs a RUN step's process in a container of rootfs (the runner's
// namespaces, cgroup and device rules), as root unless the stage's USER
// says otherwise, its output into the progress.
func (b *builder) run(ctx context.Context, sl *slot, rootfs string, step dockerfile.Step, v *vertex) error {
	rm, err := b.prepareMounts(ctx, sl, rootfs, step)
	if err != nil {
		return err
	}
	env := step.Env
	for _, e := range rm.env {
		k, val, _ := strings.Cut(e, "=")
		env = dockerfile.SetEnv(slices.Clone(env), k, val)
	}
	cfg := ocispec.Image{Config: ocispec.ImageConfig{Env: env, User: step.User, WorkingDir: step.Dir, Cmd: step.Args}}
	s, err := spec.Generate(cfg, rootfs, spec.Options{Network: step.Network})
	if err != nil {
		return err
	}
	s.Mounts = append(s.Mounts, rm.specs...)
	u := &s.Process.User
	u.AdditionalGids = withPrimaryGroup(u.GID, u.AdditionalGids)
	code, err := container.Run(ctx, s, container.Stdio{Out: v, Err: v})
	removeStubs(rootfs, rm.stubs)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%w: process %q did not complete successfully: exit code: %d", ErrRunFailed, strings.Join(step.Args, " "), code)
	}
	return nil
}

// withPrimaryGroup returns a RUN step's supplementary groups: the
// user's, with its primary group among them (first, when it was not), as
// BuildKit runs its steps (`id` shows it in groups=).
func withPrimaryGroup(gid uint32, groups []uint32) []uint32 {
	if slices.Contains(groups, gid) {
		return groups
	}
	return append([]uint32{gid}, groups...)
}

// workdir makes a WORKDIR's directory, owned by the stage's user when it
// is created.
func workdir(rootfs string, step dockerfile.Step) error {
	rootfd, err := unix.Open(rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	c := &copier{rootfs: rootfs, rootfd: rootfd}
	if step.User != "" {
		u, err := spec.ResolveUser(rootfs, step.User)
		if err != nil {
			return err
		}
		c.uid, c.gid, c.chown = int(u.UID), int(u.GID), true
	}
	fd, err := c.mkdirAll(step.Dir)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// copy runs a COPY or ADD into rootfs, from the build context, or from a
// stage's or an image's layers mounted read-only.
func (b *builder) copy(ctx context.Context, s *slot, rootfs string, cs *dockerfile.CopySpec) error {
	src := b.context
	from := b.layersOf(cs.FromStage, cs.FromImage)
	if cs.FromStage >= 0 || cs.FromImage != nil {
		dir, err := b.mountLayers(ctx, s, "src", from)
		if err != nil {
			return err
		}
		if src, err = openRoot(dir, nil, false); err != nil {
			return err
		}
		defer src.close()
	} else if src == nil && len(cs.Sources) > 0 {
		return fmt.Errorf("%w: %q: no build context", ErrNotFound, cs.Sources[0])
	}
	if len(cs.URLs) == 0 {
		return copyInto(ctx, rootfs, src, cs, s.dir)
	}
	if len(cs.Sources)+len(cs.Contents)+len(cs.URLs) > 1 && !strings.HasSuffix(cs.Dest, "/") {
		return fmt.Errorf("%w: when using ADD with more than one source file, the destination must be a directory and end with a /", ErrInvalid)
	}
	if len(cs.Sources)+len(cs.Contents) > 0 {
		if err := copyInto(ctx, rootfs, src, cs, s.dir); err != nil {
			return err
		}
	}
	return b.addRemote(ctx, s, rootfs, cs)
}

// layersOf are the layers of a stage (index in the plan) or an image.
func (b *builder) layersOf(stage int, img *dockerfile.Image) []image.Layer {
	switch {
	case stage >= 0:
		return b.results[stage].layers
	case img != nil:
		return b.used[img.ID.String()].Layers
	}
	return nil
}

// mountLayers makes the filesystem of ls readable at a directory: none
// is an empty one, one layer (or one layer repeated) is the layer's own
// directory (only read), more are a read-only overlay at the slot's
// directory name.
func (b *builder) mountLayers(ctx context.Context, s *slot, name string, ls []image.Layer) (string, error) {
	sl, err := b.storeLayers(distinctLayers(ls))
	if err != nil {
		return "", err
	}
	dir := s.path(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	switch len(sl) {
	case 0:
		return dir, nil
	case 1:
		return sl[0].Dir, nil
	}
	if name != "src" {
		s.mounts = append(s.mounts, dir)
	}
	if err := b.images.LayerStore().Mount(ctx, sl, "", "", dir); err != nil {
		return "", err
	}
	return dir, nil
}

// distinctLayers returns ls (base first) with each layer only at its top
// position: a layer listed twice (two steps that changed nothing) shows
// the same there as at both.
func distinctLayers(ls []image.Layer) []image.Layer {
	seen := map[digest.Digest]bool{}
	var out []image.Layer
	for i := len(ls) - 1; i >= 0; i-- {
		if !seen[ls[i].DiffID] {
			seen[ls[i].DiffID] = true
			out = append(out, ls[i])
		}
	}
	slices.Reverse(out)
	return out
}

// fallbackDescription describes a layer nothing else describes.
const fallbackDescription = "created by buildkit"

// fillHistory makes history account for every layer, as BuildKit's image
// exporter does when a base image's config lists fewer layers than it
// has (an image not built by docker): one entry is appended per layer
// not accounted for, from the first of them on, created by its
// description (descs, one per layer: how a base layer was pulled, or the
// step that made it as its progress names it) with the comment
// "buildkit.exporter.image.v0". Entries for more layers than there are
// become empty layers, from the last ones up.
func fillHistory(history []ocispec.History, descs []string) []ocispec.History {
	n := 0
	for _, h := range history {
		if !h.EmptyLayer {
			n++
		}
	}
	out := slices.Clone(history)
	if n > len(descs) {
		k := 0
		for i := range out {
			if k >= len(descs) {
				out[i].EmptyLayer = true
			}
			if !out[i].EmptyLayer {
				k++
			}
		}
		return out
	}
	for _, d := range descs[n:] {
		if d == "" {
			d = fallbackDescription
		}
		out = append(out, ocispec.History{CreatedBy: d, Comment: "buildkit.exporter.image.v0"})
	}
	return out
}

// historyTimes dates the build's history entries (those without a time),
// as BuildKit does: an entry that made a layer takes the layer's time
// (times, in order: when the step ran, or when the cached step first
// ran), and the others the time of the entry before them (the first new
// layer's for those before it, now when no step made a layer). A rebuild
// from the cache so gives the same config.
func historyTimes(history []ocispec.History, times []time.Time, now time.Time) {
	var fresh []int
	for i, h := range history {
		if h.Created == nil {
			fresh = append(fresh, i)
		}
	}
	// The last len(times) layer entries are the new layers' (a stage's
	// base stage's steps included).
	layerEntries := 0
	for _, i := range fresh {
		if !history[i].EmptyLayer {
			layerEntries++
		}
	}
	skip := layerEntries - len(times)
	k := 0
	for _, i := range fresh {
		if history[i].EmptyLayer {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		t := times[k]
		history[i].Created = &t
		k++
	}
	first := now
	for _, i := range fresh {
		if history[i].Created != nil {
			first = *history[i].Created
			break
		}
	}
	prev := first
	for _, i := range fresh {
		if history[i].Created == nil {
			t := prev
			history[i].Created = &t
			continue
		}
		prev = *history[i].Created
	}
}

// ociLayerTypes are the OCI media types of Docker layer blobs: the
// manifest of a build is OCI's, as BuildKit writes it, whatever the base.
var ociLayerTypes = map[string]string{
	layers.MediaTypeDockerLayer:                    ocispec.MediaTypeImageLayerGzip,
	"application/vnd.docker.image.rootfs.diff.tar": ocispec.MediaTypeImageLayer,
}

// record stores the target stage's config and manifest and records the
// image under the tags.
func (b *builder) record(st *dockerfile.Stage, res stageResult) (image.Image, error) {
	cfg := st.Config
	cfg.History = fillHistory(cfg.History, res.descs)
	created := b.created
	if epoch := b.opts.SourceDateEpoch; epoch != nil {
		// As BuildKit does: the new history entries and the image
		// take the epoch; the base image's entries keep theirs.
		created = epoch.UTC()
		for i := range cfg.History {
			if cfg.History[i].Created == nil {
				cfg.History[i].Created = &created
			}
		}
	} else {
		historyTimes(cfg.History, res.times, b.created)
		if n := len(cfg.History); n > 0 && cfg.History[n-1].Created != nil {
			created = *cfg.History[n-1].Created
		}
	}
	cfg.Created = &created
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = make([]digest.Digest, len(res.layers))
	ls := make([]image.Layer, len(res.layers))
	for i, l := range res.layers {
		cfg.RootFS.DiffIDs[i] = l.DiffID
		if mt, ok := ociLayerTypes[l.MediaType]; ok {
			l.MediaType = mt
		}
		ls[i] = l
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return image.Image{}, fmt.Errorf("build: encoding the config: %w", err)
	}
	img, err := b.images.RecordNew(image.FormatOCI, raw, ls, b.opts.Tags...)
	if err != nil {
		return image.Image{}, err
	}
	v := b.prog.vertex("exporting to image")
	v.log("writing image " + img.ID.String() + " done")
	for _, t := range img.References {
		v.log("naming to " + t + " done")
	}
	v.done()
	return img, nil
}

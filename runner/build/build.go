package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
		used: map[string]image.Image{},
	}
	b.cache = &cache{dir: filepath.Join(b.dir, cacheDir), images: images}
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
	context *srcRoot
	used    map[string]image.Image // base images by ID
	results []stageResult
	created time.Time
	records []stageRecord // the steps run or found, for CacheTo
}

// stageResult is a built stage: its layers, base first, when the layers
// its steps made were made, and the cache key of its last step.
type stageResult struct {
	layers []image.Layer
	times  []time.Time
	key    string
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
		res = stageResult{layers: append([]image.Layer(nil), base.layers...), times: append([]time.Time(nil), base.times...), key: base.key}
	case st.BaseImage != nil:
		img := b.used[st.BaseImage.ID.String()]
		for _, l := range img.Layers {
			if !b.images.HasBlob(l.Digest) {
				return fmt.Errorf("FROM %s: %w: layer %s (pulled by an older berth; pull it again)", st.Base, image.ErrBlobMissing, l.Digest)
			}
		}
		res = stageResult{layers: append([]image.Layer(nil), img.Layers...), key: "image " + img.ID.String()}
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
		key, err := b.key(res, step)
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
}
type copyKey struct {
	Kind, CreatedBy, Dest, Chown string
	Chmod                        uint32
	Add                          bool
	From, Sources                string
}
type workdirKey struct {
	Kind, Dir, User string
}

// key is the cache key of step over res: its parent's key, the step with
// its arguments expanded and, for a COPY, a hash of its sources' content
// (the build context's) or the key of what they come from (a stage's
// last step, an image's ID).
func (b *builder) key(res stageResult, step dockerfile.Step) (string, error) {
	switch step.Kind {
	case dockerfile.Run:
		return stepKey(res.key, runKey{Kind: "run", Args: step.Args, Env: step.Env, User: step.User, Dir: step.Dir, Net: step.Network}), nil
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
	return stepKey(res.key, k), nil
}

// slot is a step's scratch directory, tmp/<id>/, flocked through
// tmp/<id>.lock while it is used.
type slot struct {
	dir  string
	lock *os.File
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
	for _, d := range []string{"upper", "work", "rootfs", "src"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			os.Remove(lock.Name())
			lock.Close()
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	return &slot{dir: dir, lock: lock}, nil
}

func (s *slot) path(name string) string { return filepath.Join(s.dir, name) }

// remove unmounts what is mounted in the slot and removes it.
func (s *slot) remove() {
	for _, m := range []string{"rootfs", "src"} {
		unmount(s.path(m))
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
			(&slot{dir: strings.TrimSuffix(lp, ".lock"), lock: f}).remove()
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
	if err := b.images.LayerStore().Mount(ctx, lower, s.path("upper"), s.path("work"), rootfs); err != nil {
		return image.Layer{}, err
	}
	switch step.Kind {
	case dockerfile.Run:
		err = b.run(ctx, rootfs, step, v)
	case dockerfile.Workdir:
		err = workdir(rootfs, step)
	case dockerfile.Copy:
		err = b.copy(ctx, s, rootfs, step.Copy)
	}
	unmount(rootfs)
	if err != nil {
		return image.Layer{}, err
	}
	return b.images.StoreLayer(ctx, image.FormatOCI.Layer, func(w io.Writer) error {
		var clamp time.Time
		if b.opts.SourceDateEpoch != nil {
			clamp = *b.opts.SourceDateEpoch
		}
		_, err := layers.WriteUpper(ctx, w, s.path("upper"), layers.WriteOptions{Clamp: clamp})
		return err
	})
}

// run runs a RUN step's process in a container of rootfs (the runner's
// namespaces, cgroup and device rules), as root unless the stage's USER
// says otherwise, its output into the progress.
func (b *builder) run(ctx context.Context, rootfs string, step dockerfile.Step, v *vertex) error {
	cfg := ocispec.Image{Config: ocispec.ImageConfig{Env: step.Env, User: step.User, WorkingDir: step.Dir, Cmd: step.Args}}
	s, err := spec.Generate(cfg, rootfs, spec.Options{Network: step.Network})
	if err != nil {
		return err
	}
	code, err := container.Run(ctx, s, container.Stdio{Out: v, Err: v})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%w: process %q did not complete successfully: exit code: %d", ErrRunFailed, strings.Join(step.Args, " "), code)
	}
	return nil
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
	var from []image.Layer
	switch {
	case cs.FromStage >= 0:
		from = b.results[cs.FromStage].layers
	case cs.FromImage != nil:
		from = b.used[cs.FromImage.ID.String()].Layers
	}
	if cs.FromStage >= 0 || cs.FromImage != nil {
		dir, err := b.mountSource(ctx, s, from)
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
	return copyInto(ctx, rootfs, src, cs, s.dir)
}

// mountSource makes the filesystem of ls readable at a directory: none is
// an empty one, one is the layer's own directory (only read), more are a
// read-only overlay in the slot.
func (b *builder) mountSource(ctx context.Context, s *slot, ls []image.Layer) (string, error) {
	sl, err := b.storeLayers(ls)
	if err != nil {
		return "", err
	}
	switch len(sl) {
	case 0:
		return s.path("src"), nil
	case 1:
		return sl[0].Dir, nil
	}
	if err := b.images.LayerStore().Mount(ctx, sl, "", "", s.path("src")); err != nil {
		return "", err
	}
	return s.path("src"), nil
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

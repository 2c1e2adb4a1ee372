package main

// The gc case: "berth gc" against "docker-registry garbage-collect" on two
// copies of one generated root.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// The generated root: gcRepos repositories of gcTagged tagged images and
// gcMoved + gcDropped untagged ones each, 2,000 images in all, half of them
// untagged. Every image is a config and 2 or 3 small layers:
//
//   - tagged image k of a repository: tag tNN points at it; layer 0 comes
//     from a pool of base layers shared by all repositories, layer 1 is its
//     own, and half have a third layer of their own.
//   - moved image k (k < gcMoved): the previous push of tag tNN, whose tag
//     then moved to the tagged image (the tag's history still lists it). It
//     shares the tagged image's layers 0 and 1 and has a top layer and a
//     config of its own.
//   - dropped image k: pushed as old-NN, a tag deleted since (no trace left
//     under tags/). Its base layer comes from a part of the pool that only
//     dropped images use; every other one's second layer is the layer 1 of
//     a tagged image of the next repository (a mounted blob, which stays).
//
// Collected with untagged manifests deleted, the untagged manifests go with
// the blobs only they reference: their manifest bytes, configs, own layers
// and the pool part only they use.
const (
	gcRepos       = 50
	gcTagged      = 20
	gcMoved       = 10
	gcDropped     = 10
	gcPool        = 16 // base layers tagged images use
	gcDroppedBase = 4  // base layers only dropped images use
	gcSeed        = 2000
)

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// gcExpect is what a collection with untagged manifests deleted must do to
// the generated root.
type gcExpect struct {
	images, untagged int
	blobs            int             // blob files (data) in the root
	kept             map[string]bool // digests of the blobs that stay
	layerLinks       int             // repository layer links no kept manifest needs
	bytes            int64           // size of the blobs that go
}

// gcBlob is one generated blob.
type gcBlob struct {
	digest string
	data   []byte
}

func newGCBlob(data []byte) gcBlob {
	sum := sha256.Sum256(data)
	return gcBlob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

// gcImage is one generated image of a repository.
type gcImage struct {
	config   gcBlob
	layers   []gcBlob
	manifest gcBlob
}

// writeGCRoot writes the root described above under root (the directory a
// registry's storage root points at) in the Distribution v2 layout drawn
// in storage/store/layout.go, as pushes would have left it, without going
// through a registry (no leases, no fsync: it takes about a second, so it
// is not cached between runs). It returns what a collection must do to it.
func writeGCRoot(root string) (gcExpect, error) {
	rng := rand.New(rand.NewChaCha8([32]byte{gcSeed >> 8, gcSeed & 0xff}))
	v2 := filepath.Join(root, "docker", "registry", "v2")
	put := func(p string, data []byte) error {
		name := filepath.Join(v2, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		return os.WriteFile(name, data, 0o644)
	}
	hexOf := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	blobs := map[string]gcBlob{}
	putBlob := func(b gcBlob) error {
		if _, ok := blobs[b.digest]; ok {
			return nil
		}
		blobs[b.digest] = b
		h := hexOf(b.digest)
		return put("blobs/sha256/"+h[:2]+"/"+h+"/data", b.data)
	}
	link := func(p, d string) error { return put(p, []byte(d)) }
	randomLayer := func(min, max int) gcBlob {
		b := make([]byte, min+rng.IntN(max-min+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return newGCBlob(b)
	}
	image := func(label string, layers ...gcBlob) gcImage {
		var diffIDs []string
		for _, l := range layers {
			diffIDs = append(diffIDs, l.digest)
		}
		cfg, _ := json.Marshal(map[string]any{
			"architecture": "amd64", "os": "linux",
			"config": map[string]any{"Labels": map[string]string{"berth.bench": label}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		im := gcImage{config: newGCBlob(cfg), layers: layers}
		m := struct {
			SchemaVersion int          `json:"schemaVersion"`
			MediaType     string       `json:"mediaType"`
			Config        descriptor   `json:"config"`
			Layers        []descriptor `json:"layers"`
		}{SchemaVersion: 2, MediaType: mtManifest,
			Config: descriptor{MediaType: mtConfig, Digest: im.config.digest, Size: len(im.config.data)}}
		for _, l := range layers {
			m.Layers = append(m.Layers, descriptor{MediaType: mtLayer, Digest: l.digest, Size: len(l.data)})
		}
		body, _ := json.MarshalIndent(m, "", "   ")
		im.manifest = newGCBlob(body)
		return im
	}

	pool := make([]gcBlob, gcPool+gcDroppedBase)
	for i := range pool {
		pool[i] = randomLayer(12<<10, 20<<10)
	}
	repoName := func(r int) string { return fmt.Sprintf("gcbench/app-%02d", r) }
	// tagged[r][k] first: dropped images of repository r mount layers of
	// repository r+1's.
	tagged := make([][]gcImage, gcRepos)
	for r := range tagged {
		for k := range gcTagged {
			layers := []gcBlob{pool[(r+k)%gcPool], randomLayer(1<<10, 8<<10)}
			if rng.IntN(2) == 0 {
				layers = append(layers, randomLayer(512, 4<<10))
			}
			tagged[r] = append(tagged[r], image(fmt.Sprintf("%s:t%02d", repoName(r), k), layers...))
		}
	}
	exp := gcExpect{kept: map[string]bool{}}
	for r := range gcRepos {
		repo := "repositories/" + repoName(r)
		type entry struct {
			im   gcImage
			tags []string // whose history lists it
		}
		var keep, drop []entry
		for k, im := range tagged[r] {
			keep = append(keep, entry{im, []string{fmt.Sprintf("t%02d", k)}})
		}
		for k := range gcMoved {
			cur := tagged[r][k]
			im := image(fmt.Sprintf("%s:t%02d (before)", repoName(r), k), cur.layers[0], cur.layers[1], randomLayer(512, 4<<10))
			drop = append(drop, entry{im, []string{fmt.Sprintf("t%02d", k)}})
		}
		for k := range gcDropped {
			layers := []gcBlob{pool[gcPool+(r+k)%gcDroppedBase]}
			if k%2 == 0 {
				layers = append(layers, tagged[(r+1)%gcRepos][k].layers[1])
			} else {
				layers = append(layers, randomLayer(1<<10, 8<<10))
			}
			if rng.IntN(2) == 0 {
				layers = append(layers, randomLayer(512, 4<<10))
			}
			drop = append(drop, entry{image(fmt.Sprintf("%s:old-%02d", repoName(r), k), layers...), nil})
		}
		keptLinks, allLinks := map[string]bool{}, map[string]bool{}
		for i, e := range slices.Concat(keep, drop) {
			refs := append([]gcBlob{e.im.config}, e.im.layers...)
			for _, b := range append(refs, e.im.manifest) {
				if err := putBlob(b); err != nil {
					return exp, err
				}
				if i < len(keep) {
					exp.kept[b.digest] = true
				}
			}
			for _, b := range refs {
				if err := link(repo+"/_layers/sha256/"+hexOf(b.digest)+"/link", b.digest); err != nil {
					return exp, err
				}
				allLinks[b.digest] = true
				if i < len(keep) {
					keptLinks[b.digest] = true
				}
			}
			d := e.im.manifest.digest
			if err := link(repo+"/_manifests/revisions/sha256/"+hexOf(d)+"/link", d); err != nil {
				return exp, err
			}
			for _, t := range e.tags {
				if err := link(repo+"/_manifests/tags/"+t+"/index/sha256/"+hexOf(d)+"/link", d); err != nil {
					return exp, err
				}
			}
			if i < len(keep) {
				if err := link(repo+"/_manifests/tags/"+e.tags[0]+"/current/link", d); err != nil {
					return exp, err
				}
			}
		}
		exp.images += len(keep) + len(drop)
		exp.untagged += len(drop)
		exp.layerLinks += len(allLinks) - len(keptLinks)
	}
	exp.blobs = len(blobs)
	for d, b := range blobs {
		if !exp.kept[d] {
			exp.bytes += int64(len(b.data))
		}
	}
	return exp, nil
}

// blobFiles returns the sorted paths of the blob data files under root,
// relative to its blob store.
func blobFiles(root string) ([]string, error) {
	dir := filepath.Join(root, "docker", "registry", "v2", "blobs")
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && e.Name() == "data" {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// digestOfBlobFile turns "sha256/ab/abcd.../data" into "sha256:abcd...".
func digestOfBlobFile(rel string) string {
	parts := strings.Split(rel, "/")
	if len(parts) != 4 {
		return rel
	}
	return parts[0] + ":" + parts[2]
}

// gcRun is one timed collection.
type gcRun struct {
	wall, cpu time.Duration
	stdout    []byte
	stderr    []byte
}

// dropCaches writes back dirty pages and empties the page, dentry and inode
// caches, so that a collector starts cold; it reports whether it could
// (root only).
func dropCaches() bool {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) == nil
}

// timedCollect drops the caches and runs bin with args, timing it.
func timedCollect(ctx context.Context, bin string, args ...string) (gcRun, error) {
	dropCaches()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := gcRun{wall: time.Since(start), stdout: out.Bytes(), stderr: errb.Bytes()}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, tail(errb.Bytes(), out.Bytes()))
	}
	return r, nil
}

// tail returns the last lines of what a failed command printed.
func tail(outs ...[]byte) string {
	var lines []string
	for _, o := range outs {
		lines = append(lines, strings.Split(strings.TrimRight(string(o), "\n"), "\n")...)
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// berthReport is the part of "berth gc --json" read here.
type berthReport struct {
	DryRun   bool          `json:"dryRun"`
	Duration time.Duration `json:"duration"`
	Deleted  struct {
		Manifests  int   `json:"manifests"`
		Blobs      int   `json:"blobs"`
		Bytes      int64 `json:"bytes"`
		LayerLinks int   `json:"layerLinks"`
	} `json:"deleted"`
	Spared map[string]int64 `json:"spared"`
}

// checkBerth checks berth's report against exp.
func checkBerth(out []byte, exp gcExpect) (berthReport, error) {
	var rep berthReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return rep, fmt.Errorf("berth gc --json: %v", err)
	}
	d := rep.Deleted
	want := fmt.Sprintf("%d manifests, %d blobs (%d bytes), %d layer links", exp.untagged, exp.blobs-len(exp.kept), exp.bytes, exp.layerLinks)
	got := fmt.Sprintf("%d manifests, %d blobs (%d bytes), %d layer links", d.Manifests, d.Blobs, d.Bytes, d.LayerLinks)
	if got != want {
		return rep, fmt.Errorf("berth gc deleted %s, want %s", got, want)
	}
	for kind, n := range rep.Spared {
		if n != 0 {
			return rep, fmt.Errorf("berth gc spared %d %s (no client was running)", n, kind)
		}
	}
	return rep, nil
}

var drSummary = regexp.MustCompile(`(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion`)

// checkDistribution checks docker-registry's closing line against exp.
func checkDistribution(out []byte, exp gcExpect) error {
	m := drSummary.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("docker-registry garbage-collect printed no summary:\n%s", tail(out))
	}
	want := fmt.Sprintf("%d blobs marked, %d blobs and %d manifests eligible for deletion", len(exp.kept), exp.blobs-len(exp.kept), exp.untagged)
	if string(m[0]) != want {
		return fmt.Errorf("docker-registry garbage-collect: %q, want %q", m[0], want)
	}
	return nil
}

// copyTree replaces dst with a copy of src (cp -a: same modes and times).
func copyTree(ctx context.Context, src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

// runGC generates the root under dir, then, reps times, collects a fresh
// copy with each registry in turn (the first one alternates), cold, dry run
// first, and checks that both left the same blobs, the expected ones.
// writeGCRootOnly writes the gc case's generated root to dir (which must not
// exist yet) and says what a collection must find in it.
func writeGCRootOnly(dir string) error {
	if dir == "" {
		return errors.New("-only gc-root needs -dir")
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists; the root is written to a new directory", dir)
	}
	exp, err := writeGCRoot(dir)
	if err != nil {
		return err
	}
	fmt.Printf("bench: gc root in %s: %d images (%d untagged), %d blobs, %d to go (%s), %d layer links to go\n",
		dir, exp.images, exp.untagged, exp.blobs, exp.blobs-len(exp.kept), mib(exp.bytes), exp.layerLinks)
	return nil
}

func runGC(ctx context.Context, berthBin, drBin, dir string, reps int) error {
	if reps < 1 {
		return errors.New("-gc-reps must be at least 1")
	}
	if _, err := exec.LookPath(drBin); err != nil {
		return fmt.Errorf("docker-registry: %w", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "gc-source")
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	t0 := time.Now()
	exp, err := writeGCRoot(src)
	if err != nil {
		return fmt.Errorf("generating the gc root: %w", err)
	}
	defer os.RemoveAll(src)
	files, err := blobFiles(src)
	if err != nil {
		return err
	}
	if len(files) != exp.blobs {
		return fmt.Errorf("generated %d blob files, want %d", len(files), exp.blobs)
	}
	var want []string
	for _, f := range files {
		if exp.kept[digestOfBlobFile(f)] {
			want = append(want, f)
		}
	}
	fmt.Printf("\nbench: gc root: %d images in %d repositories (%d untagged), %d blobs (%d to go, %s), %d layer links to go; generated in %.1fs\n",
		exp.images, gcRepos, exp.untagged, exp.blobs, exp.blobs-len(exp.kept), mib(exp.bytes), exp.layerLinks, time.Since(t0).Seconds())
	if !dropCaches() {
		fmt.Println("bench: gc: cannot drop the page cache (not root): the runs are warm, not cold")
	}

	drConfig := filepath.Join(dir, "gc-docker-registry.yml")
	roots := map[string]string{
		"berth":           filepath.Join(dir, "gc-berth"),
		"docker-registry": filepath.Join(dir, "gc-docker-registry"),
	}
	defer os.RemoveAll(roots["berth"])
	defer os.RemoveAll(roots["docker-registry"])
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %q\n", roots["docker-registry"])
	if err := os.WriteFile(drConfig, []byte(config), 0o644); err != nil {
		return err
	}
	defer os.Remove(drConfig)
	collect := func(name string, dryRun bool) (gcRun, error) {
		if name == "berth" {
			args := []string{"gc", "--root", roots[name], "--grace", "0", "--delete-untagged", "--json"}
			if dryRun {
				args = append(args, "--dry-run")
			}
			return timedCollect(ctx, berthBin, args...)
		}
		args := []string{"garbage-collect", "--delete-untagged"}
		if dryRun {
			args = append(args, "--dry-run")
		}
		return timedCollect(ctx, drBin, append(args, drConfig)...)
	}
	check := func(name string, r gcRun) (string, error) {
		if name == "docker-registry" {
			return "", checkDistribution(r.stdout, exp)
		}
		rep, err := checkBerth(r.stdout, exp)
		return fmt.Sprintf(" (deleted %d manifests, %d blobs, %s, %d layer links)",
			rep.Deleted.Manifests, rep.Deleted.Blobs, mib(rep.Deleted.Bytes), rep.Deleted.LayerLinks), err
	}

	names := []string{"berth", "docker-registry"}
	wall := map[string][]float64{}
	cpu := map[string][]float64{}
	for rep := 1; rep <= reps; rep++ {
		order := slices.Clone(names)
		if rep%2 == 0 {
			slices.Reverse(order)
		}
		for _, name := range order {
			if err := copyTree(ctx, src, roots[name]); err != nil {
				return err
			}
		}
		for _, dry := range []bool{true, false} {
			key := map[bool]string{true: " dry run", false: ""}[dry]
			for _, name := range order {
				r, err := collect(name, dry)
				if err != nil {
					return err
				}
				note, err := check(name, r)
				if err != nil {
					return err
				}
				if dry {
					note = ""
				}
				wall[name+key] = append(wall[name+key], r.wall.Seconds())
				cpu[name+key] = append(cpu[name+key], r.cpu.Seconds())
				fmt.Printf("bench: gc run %d: %-15s%-8s %6.2fs (cpu %.2fs)%s\n", rep, name, key, r.wall.Seconds(), r.cpu.Seconds(), note)
			}
		}
		got := map[string][]string{}
		for _, name := range names {
			if got[name], err = blobFiles(roots[name]); err != nil {
				return err
			}
		}
		if !slices.Equal(got["berth"], got["docker-registry"]) {
			return fmt.Errorf("MISMATCH: berth left %d blob files, docker-registry %d, and they differ:\n%s",
				len(got["berth"]), len(got["docker-registry"]), diffLists("berth", got["berth"], "docker-registry", got["docker-registry"]))
		}
		if !slices.Equal(got["berth"], want) {
			return fmt.Errorf("MISMATCH: both left %d blob files, but the tagged images need exactly %d:\n%s",
				len(got["berth"]), len(want), diffLists("left", got["berth"], "needed", want))
		}
		fmt.Printf("bench: gc run %d: both left the same %d blob files, those of the tagged images\n", rep, len(want))
	}

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "gc of %d images (%d untagged), cold\tunit\tberth\tdocker-registry\tberth/docker-registry\tbest/best\t\n", exp.images, exp.untagged)
	for _, key := range []string{"", " dry run"} {
		b, d := wall["berth"+key], wall["docker-registry"+key]
		row := "--delete-untagged" + key
		fmt.Fprintf(tw, "%s, median\ts\t%.2f\t%.2f\t%.2f\t%.2f\t\n", row, median(b), median(d), median(b)/median(d), slices.Min(b)/slices.Min(d))
		fmt.Fprintf(tw, "%s, best\ts\t%.2f\t%.2f\t\t\t\n", row, slices.Min(b), slices.Min(d))
		fmt.Fprintf(tw, "%s, cpu (user+sys), median\ts\t%.2f\t%.2f\t%.2f\t\t\n", row, median(cpu["berth"+key]), median(cpu["docker-registry"+key]),
			median(cpu["berth"+key])/median(cpu["docker-registry"+key]))
	}
	tw.Flush()
	fmt.Println("\nsamples (s):")
	for _, key := range []string{"", " dry run"} {
		for _, name := range names {
			var s []string
			for _, v := range wall[name+key] {
				s = append(s, strconv.FormatFloat(v, 'f', 2, 64))
			}
			fmt.Printf("  gc%-9s %-16s %s\n", key, name, strings.Join(s, " "))
		}
	}
	fmt.Println("\nEach run starts from a fresh cp -a of one generated root with the page, dentry and inode")
	fmt.Println("caches dropped. Berth also deletes the layer links of the deleted images (Distribution 2.8")
	fmt.Println("leaves them) and works under its online-gc interlock (doom lists written, leases read).")
	return nil
}

// diffLists shows the entries only one of two sorted lists holds (at most
// 20 of each).
func diffLists(an string, a []string, bn string, b []string) string {
	var onlyA, onlyB []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			onlyA = append(onlyA, x)
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			onlyB = append(onlyB, x)
		}
	}
	show := func(v []string) string {
		if len(v) > 20 {
			return strings.Join(v[:20], "\n    ") + fmt.Sprintf("\n    ... (%d more)", len(v)-20)
		}
		return strings.Join(v, "\n    ")
	}
	return fmt.Sprintf("  only %s (%d):\n    %s\n  only %s (%d):\n    %s", an, len(onlyA), show(onlyA), bn, len(onlyB), show(onlyB))
}

// mib spells n bytes in MiB with one decimal (sizeName rounds down to whole
// MiB, too coarse for a few MiB of small blobs).
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

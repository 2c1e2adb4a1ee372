package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestArchive takes images through `berth save` and `berth load` and the
// other tools that read and write those archives: podman load and skopeo
// read what berth saves, berth loads and runs what skopeo writes (a
// docker-archive, an OCI archive, gzip-compressed, a multi-platform
// index), and hostile archives are refused with the entry named and
// nothing loaded.
func TestArchive(t *testing.T) {
	needIntegration(t)
	t.Parallel()
	prerequisite(t, os.Geteuid() == 0, "berth run and the layer store need root")
	env := toolEnv(t)
	needTools(t, env, "skopeo", "podman")
	dir, all := testImages(t)
	var imgs []testImage
	byName := map[string]testImage{}
	for _, img := range all {
		if img.Name != "debian" {
			imgs = append(imgs, img)
			byName[img.Name] = img
		}
	}
	srv := startServer(t, underTest(), Filesystem, t.TempDir())
	pushImages(t, env, srv.Host, "archive", dir, imgs)
	ref := func(name string) string { return srv.Host + "/archive/" + name + ":latest" }
	newCLI := func(t *testing.T) berthCLI {
		return berthCLI{t: t, bin: berthBinary(t), state: filepath.Join(t.TempDir(), "state")}
	}
	b := newCLI(t)
	ids := map[string]string{}
	for _, name := range []string{"busybox", "multilayer"} {
		ids[name] = strings.TrimSpace(b.ok("pull", "-q", ref(name)))
	}
	skopeo := func(t *testing.T, args ...string) string {
		t.Helper()
		return mustOutput(t, env, "skopeo", append([]string{"--insecure-policy"}, args...)...)
	}

	t.Run("save to podman and skopeo", func(t *testing.T) {
		tarFile := filepath.Join(t.TempDir(), "saved.tar")
		b.ok("save", "-o", tarFile, ref("busybox"), ref("multilayer"))
		// A private storage: the host's images are not touched. podman
		// wants a short runroot.
		root, err := os.MkdirTemp("", "pd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
		podman := []string{"--root", filepath.Join(root, "s"), "--runroot", filepath.Join(root, "r"), "--storage-driver", "vfs"}
		out := mustOutput(t, env, "podman", append(podman, "load", "-i", tarFile)...)
		for _, name := range []string{"busybox", "multilayer"} {
			if !strings.Contains(out, ref(name)) {
				t.Errorf("podman load output %q lacks %s", out, ref(name))
			}
			id := mustOutput(t, env, "podman", append(podman, "image", "inspect", "--format", "{{.ID}}", ref(name))...)
			if "sha256:"+id != ids[name] {
				t.Errorf("podman's %s is %s, berth's %s", name, id, ids[name])
			}
			// skopeo decompresses the layers of the docker-archive and
			// hands out the config as stored.
			cfg := skopeo(t, "inspect", "--raw", "--config", "docker-archive:"+tarFile+":"+ref(name))
			if got := sha256Digest([]byte(cfg)); got != ids[name] {
				t.Errorf("skopeo inspect docker-archive: config %s, want %s", got, ids[name])
			}
		}
		var info struct{ Layers []string }
		if err := json.Unmarshal([]byte(skopeo(t, "inspect", "docker-archive:"+tarFile+":"+ref("multilayer"))), &info); err != nil || len(info.Layers) < 2 {
			t.Errorf("skopeo inspect docker-archive: layers %q, %v", info.Layers, err)
		}
	})

	t.Run("save to an OCI layout", func(t *testing.T) {
		tmp := t.TempDir()
		tarFile := filepath.Join(tmp, "saved.tar")
		b.ok("save", "-o", tarFile, ref("busybox"))
		layout := filepath.Join(tmp, "layout")
		skopeo(t, "copy", "oci-archive:"+tarFile, "oci:"+layout+":copied")
		var idx struct{ Manifests []struct{ Digest string } }
		raw, err := os.ReadFile(filepath.Join(layout, "index.json"))
		if err != nil || json.Unmarshal(raw, &idx) != nil || len(idx.Manifests) != 1 {
			t.Fatalf("index.json of the copy: %s, %v", raw, err)
		}
		if got := idx.Manifests[0].Digest; got != byName["busybox"].Digest {
			t.Errorf("manifest %s after berth save and skopeo copy, want the pulled %s", got, byName["busybox"].Digest)
		}
		if out := skopeo(t, "inspect", "oci:"+layout+":copied"); !strings.Contains(out, byName["busybox"].Digest) {
			t.Errorf("skopeo inspect of the copy: %s", out)
		}
	})

	t.Run("skopeo docker-archive to berth run", func(t *testing.T) {
		tarFile := filepath.Join(t.TempDir(), "skopeo.tar")
		name := srv.Host + "/archive/from-skopeo:1"
		skopeo(t, "copy", "--src-tls-verify=false", "docker://"+ref("busybox"), "docker-archive:"+tarFile+":"+name)
		l := newCLI(t)
		if out := l.ok("load", "-i", tarFile); out != "Loaded image: "+name+"\n" {
			t.Errorf("berth load: %q", out)
		}
		if out := l.ok("run", "--rm", name); !strings.Contains(out, "hello from busybox\n") {
			t.Errorf("berth run of the loaded image: %q", out)
		}
		if out := l.ok("images", "-q"); !strings.HasPrefix(ids["busybox"], "sha256:"+strings.TrimSpace(out)) {
			t.Errorf("images -q %q, want the ID %s", out, ids["busybox"])
		}
	})

	t.Run("skopeo OCI archive to berth", func(t *testing.T) {
		tmp := t.TempDir()
		tarFile := filepath.Join(tmp, "oci.tar")
		skopeo(t, "copy", "--src-tls-verify=false", "docker://"+ref("busybox"), "oci-archive:"+tarFile+":"+srv.Host+"/archive/oci:2")
		raw, err := os.ReadFile(tarFile)
		if err != nil {
			t.Fatal(err)
		}
		gz := filepath.Join(tmp, "oci.tar.gz")
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		os.WriteFile(gz, buf.Bytes(), 0o644)
		for _, f := range []string{tarFile, gz} {
			l := newCLI(t)
			if out := l.ok("load", "-i", f); out != "Loaded image: "+srv.Host+"/archive/oci:2\n" {
				t.Errorf("berth load %s: %q", filepath.Base(f), out)
			}
			if got := refManifest(t, l, srv.Host+"/archive/oci:2"); got != byName["busybox"].Digest {
				t.Errorf("loaded %s: manifest %s, want %s as pushed", filepath.Base(f), got, byName["busybox"].Digest)
			}
		}
	})

	t.Run("multi-platform OCI archive", func(t *testing.T) {
		tarFile := filepath.Join(t.TempDir(), "multi.tar")
		name := srv.Host + "/archive/multi:1"
		skopeo(t, "copy", "--all", "--src-tls-verify=false", "docker://"+ref("multiarch"), "oci-archive:"+tarFile+":"+name)
		l := newCLI(t)
		l.ok("load", "-i", tarFile)
		if out := l.ok("run", "--rm", name); strings.TrimSpace(out) != "linux/amd64" {
			t.Errorf("run of the loaded multi-platform image: %q, want linux/amd64", out)
		}
	})

	t.Run("hostile archives", func(t *testing.T) {
		tmp := t.TempDir()
		good := filepath.Join(tmp, "good.tar")
		b.ok("save", "-o", good, ref("busybox"))
		raw, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		entries := tarEntries(t, raw)
		var blob string
		for _, e := range entries {
			if strings.HasPrefix(e.hdr.Name, "blobs/sha256/") && e.hdr.Size > 1000 {
				blob = e.hdr.Name
			}
		}
		with := func(extra ...archiveEntry) []byte { // before the metadata, after the blobs
			return writeTarEntries(t, slices.Concat(entries[:len(entries)-4], extra, entries[len(entries)-4:]))
		}
		lying := slices.Clone(entries)
		for i, e := range lying {
			if e.hdr.Name == blob {
				body := slices.Clone(e.body)
				body[len(body)/2] ^= 0xff
				lying[i].body = body
			}
		}
		reg := func(name string) archiveEntry {
			return archiveEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: 1}, []byte("x")}
		}
		lnk := func(typ byte, name, target string) archiveEntry {
			return archiveEntry{tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}, nil}
		}
		for _, tc := range []struct {
			name, entry string
			data        []byte
		}{
			{"truncated", "blobs/sha256/", raw[:len(raw)/2]},
			{"lying blob", blob, writeTarEntries(t, lying)},
			{"dot-dot climb", "../../etc/evil", with(reg("../../etc/evil"))},
			{"absolute path", "/etc/evil", with(reg("/etc/evil"))},
			{"symlink out", "escape", with(lnk(tar.TypeSymlink, "escape", "../../../etc"))},
			{"write through a symlink", "inside/evil", with(lnk(tar.TypeSymlink, "inside", "blobs"), reg("inside/evil"))},
			{"hardlink out", "hl", with(lnk(tar.TypeLink, "hl", "/etc/shadow"))},
			{"device node", "dev/mem", with(archiveEntry{tar.Header{Typeflag: tar.TypeChar, Name: "dev/mem", Mode: 0o600, Devmajor: 1, Devminor: 1}, nil})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := filepath.Join(t.TempDir(), "hostile.tar")
				if err := os.WriteFile(f, tc.data, 0o644); err != nil {
					t.Fatal(err)
				}
				l := newCLI(t)
				out, errOut, code := l.run("load", "-i", f)
				if code != 1 || !strings.Contains(errOut, tc.entry) || out != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want 1 and the entry %s named", code, out, errOut, tc.entry)
				}
				if imgs := l.ok("images", "-q"); imgs != "" {
					t.Errorf("images after a refused load: %q", imgs)
				}
			})
		}
	})
}

// refManifest returns the manifest digest the state's reference index
// gives ref.
func refManifest(t *testing.T, b berthCLI, ref string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.state, "refs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Refs map[string]struct{ Manifest string }
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Refs[ref].Manifest
}

// archiveEntry is one entry of a tar.
type archiveEntry struct {
	hdr  tar.Header
	body []byte
}

// tarEntries returns the entries of a tar.
func tarEntries(t *testing.T, b []byte) []archiveEntry {
	t.Helper()
	var out []archiveEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, archiveEntry{*hdr, body})
	}
}

// writeTarEntries writes a tar of the entries.
func writeTarEntries(t *testing.T, entries []archiveEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

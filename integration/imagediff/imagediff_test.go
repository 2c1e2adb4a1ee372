package imagediff_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-registry/berth/integration/imagediff"
	"github.com/klauspost/compress/zstd"
)

// TestCompare runs every testdata/*.txt case: two images, a and b, written
// as files in the formats the case names, loaded, and compared; the
// differences must be the case's "want" lines exactly, in order.
//
// A case file is sections "-- NAME --":
//
//	-- a config --            the image config JSON (default: amd64/linux, no
//	                          config); rootfs.diff_ids is filled in
//	-- a layer gzip|zstd|tar -- one layer, one entry a line (below)
//	-- a as FORMAT --         oci-tar (a's default), oci-dir (b's default),
//	                          docker-archive, or oci-nested (index.json points
//	                          at an index holding the image and an attestation)
//	-- want --                the expected differences, one a line
//
// An entry line is "TYPE PATH KEY=VALUE...", TYPE one of dir, file,
// symlink, hardlink, char, fifo, whiteout (PATH gets the .wh. prefix),
// opaque (PATH is the directory); keys: mode=0644 owner=UID:GID
// content=TEXT (Go-quoted if it has spaces) target=PATH (symlink and
// hardlink) dev=MAJOR,MINOR xattr.NAME=VALUE.
func TestCompare(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no test cases in testdata: %v", err)
	}
	for _, file := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			c := parseCase(t, file)
			dir := t.TempDir()
			a := loadImage(t, c.images["a"], filepath.Join(dir, "a"), "oci-tar")
			b := loadImage(t, c.images["b"], filepath.Join(dir, "b"), "oci-dir")
			got := imagediff.Compare(a, b)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("differences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			// Each image is equal to itself, and the comparison is symmetric
			// in its count.
			if same := imagediff.Compare(a, a); len(same) != 0 {
				t.Errorf("a compared with itself: %q", same)
			}
			if back := imagediff.Compare(b, a); len(back) != len(got) {
				t.Errorf("b vs a: %d differences, a vs b %d:\n%s", len(back), len(got), strings.Join(back, "\n"))
			}
		})
	}
}

// TestLoadErrors checks that inputs which are not one image are refused
// with ErrFormat.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two")
	writeLayout(t, two, testImage{config: "{}"}, "oci-dir")
	// index.json listing the same manifest twice: two images.
	var idx map[string]any
	b, _ := os.ReadFile(filepath.Join(two, "index.json"))
	json.Unmarshal(b, &idx)
	m := idx["manifests"].([]any)
	idx["manifests"] = append(m, m[0])
	b, _ = json.Marshal(idx)
	os.WriteFile(filepath.Join(two, "index.json"), b, 0o644)

	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	badLink := filepath.Join(dir, "badlink")
	writeLayout(t, badLink, testImage{config: "{}", layers: []testLayer{{comp: "tar", entries: []string{"hardlink a target=nowhere"}}}}, "oci-dir")
	for _, p := range []string{two, empty, badLink} {
		if _, err := imagediff.Load(p); err == nil || !strings.Contains(err.Error(), "not a readable image") {
			t.Errorf("Load(%s): %v, want ErrFormat", filepath.Base(p), err)
		}
	}
}

type testLayer struct {
	comp    string
	entries []string
}

type testImage struct {
	config string
	layers []testLayer
	format string
}

type testCase struct {
	images map[string]*testImage
	want   []string
}

func parseCase(t *testing.T, file string) testCase {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := testCase{images: map[string]*testImage{"a": {}, "b": {}}}
	var section []string
	var lines *[]string
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "-- "); ok && strings.HasSuffix(h, " --") {
			section = strings.Fields(strings.TrimSuffix(h, " --"))
			switch {
			case len(section) == 1 && section[0] == "want":
				lines = &c.want
			case len(section) >= 2 && c.images[section[0]] != nil:
				img := c.images[section[0]]
				switch section[1] {
				case "config":
					lines = nil
				case "layer":
					img.layers = append(img.layers, testLayer{comp: section[2]})
					lines = &img.layers[len(img.layers)-1].entries
				case "as":
					img.format = section[2]
					lines = nil
				default:
					t.Fatalf("%s: bad section %q", file, h)
				}
			default:
				t.Fatalf("%s: bad section %q", file, h)
			}
			continue
		}
		if section == nil || (lines != nil && (strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"))) {
			continue
		}
		if lines != nil {
			*lines = append(*lines, line)
		} else if section[1] == "config" {
			c.images[section[0]].config += line + "\n"
		}
	}
	return c
}

// loadImage writes img under p in its format (or def) and loads it.
func loadImage(t *testing.T, img *testImage, p, def string) *imagediff.Image {
	t.Helper()
	format := img.format
	if format == "" {
		format = def
	}
	p = writeLayout(t, p, *img, format)
	loaded, err := imagediff.Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	loaded.Name = filepath.Base(strings.TrimSuffix(p, ".tar"))
	return loaded
}

// writeLayout writes img at p (p.tar for the tar formats) and returns the
// path written.
func writeLayout(t *testing.T, p string, img testImage, format string) string {
	t.Helper()
	blobs := map[string][]byte{}
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	config := map[string]any{"architecture": "amd64", "os": "linux"}
	if strings.TrimSpace(img.config) != "" {
		if err := json.Unmarshal([]byte(img.config), &config); err != nil {
			t.Fatalf("config: %v", err)
		}
	}
	var diffIDs []string
	var layers []map[string]any
	for _, l := range img.layers {
		raw := layerTar(t, l.entries)
		sum := sha256.Sum256(raw)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
		blob, mt := compress(t, raw, l.comp)
		layers = append(layers, map[string]any{"mediaType": mt, "digest": put(blob), "size": len(blob)})
	}
	config["rootfs"] = map[string]any{"type": "layers", "diff_ids": diffIDs}
	cfg, _ := json.Marshal(config)
	cfgDigest := put(cfg)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": len(cfg)},
		"layers": layers,
	})
	manDigest := put(man)
	files := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)}
	top := map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manDigest, "size": len(man)}
	if format == "oci-nested" {
		att := put([]byte(`{"schemaVersion":2}`))
		nested, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manDigest, "size": len(man),
				"platform": map[string]string{"os": "linux", "architecture": "amd64"}},
			map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att, "size": 19,
				"platform": map[string]string{"os": "unknown", "architecture": "unknown"}},
		}})
		top = map[string]any{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": put(nested), "size": len(nested)}
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{top}})
	files["index.json"] = index
	for d, b := range blobs {
		files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] = b
	}
	if format == "docker-archive" {
		files = map[string][]byte{}
		var layerFiles []string
		for _, l := range layers {
			name := strings.TrimPrefix(l["digest"].(string), "sha256:") + "/layer.tar"
			files[name] = blobs[l["digest"].(string)]
			layerFiles = append(layerFiles, name)
		}
		files["config.json"] = cfg
		mj, _ := json.Marshal([]any{map[string]any{"Config": "config.json", "RepoTags": []string{"x:latest"}, "Layers": layerFiles}})
		files["manifest.json"] = mj
	}
	if format == "oci-dir" {
		for name, b := range files {
			f := filepath.Join(p, name)
			os.MkdirAll(filepath.Dir(f), 0o755)
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.Close()
	if err := os.WriteFile(p+".tar", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p + ".tar"
}

func compress(t *testing.T, raw []byte, comp string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	switch comp {
	case "tar":
		return raw, "application/vnd.oci.image.layer.v1.tar"
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		return buf.Bytes(), "application/vnd.oci.image.layer.v1.tar+gzip"
	case "zstd":
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		return buf.Bytes(), "application/vnd.oci.image.layer.v1.tar+zstd"
	}
	t.Fatalf("unknown compression %q", comp)
	return nil, ""
}

// layerTar makes a layer tar of entry lines.
func layerTar(t *testing.T, entries []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, line := range entries {
		f := tokens(t, line)
		if len(f) < 2 {
			t.Fatalf("bad entry %q", line)
		}
		hdr := &tar.Header{Name: f[1], Mode: 0o644, Format: tar.FormatPAX}
		var content string
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case k == "mode":
				m, err := strconv.ParseInt(v, 8, 64)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				hdr.Mode = m
			case k == "owner":
				fmt.Sscanf(v, "%d:%d", &hdr.Uid, &hdr.Gid)
			case k == "content":
				content = v
			case k == "target":
				hdr.Linkname = v
			case k == "dev":
				fmt.Sscanf(v, "%d,%d", &hdr.Devmajor, &hdr.Devminor)
			case strings.HasPrefix(k, "xattr."):
				if hdr.PAXRecords == nil {
					hdr.PAXRecords = map[string]string{}
				}
				hdr.PAXRecords["SCHILY.xattr."+strings.TrimPrefix(k, "xattr.")] = v
			default:
				t.Fatalf("%q: unknown key %q", line, k)
			}
		}
		switch f[0] {
		case "dir":
			hdr.Typeflag = tar.TypeDir
			if hdr.Mode == 0o644 {
				hdr.Mode = 0o755
			}
		case "file":
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(content))
		case "symlink":
			hdr.Typeflag = tar.TypeSymlink
		case "hardlink":
			hdr.Typeflag = tar.TypeLink
		case "char":
			hdr.Typeflag = tar.TypeChar
		case "fifo":
			hdr.Typeflag = tar.TypeFifo
		case "whiteout":
			dir, base := filepath.Split(f[1])
			hdr.Typeflag, hdr.Name = tar.TypeReg, dir+".wh."+base
		case "opaque":
			hdr.Typeflag, hdr.Name = tar.TypeReg, strings.TrimSuffix(f[1], "/")+"/.wh..wh..opq"
		default:
			t.Fatalf("%q: unknown type %q", line, f[0])
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		tw.Write([]byte(content))
	}
	tw.Close()
	return buf.Bytes()
}

// tokens splits line at spaces; a value after "=" may be Go-quoted.
func tokens(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimSpace(rest) {
		if i := strings.Index(rest, `="`); i >= 0 && !strings.ContainsAny(rest[:i], " \t") {
			q, err := strconv.QuotedPrefix(rest[i+1:])
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			v, _ := strconv.Unquote(q)
			out = append(out, rest[:i+1]+v)
			rest = rest[i+1+len(q):]
			continue
		}
		tok, after, _ := strings.Cut(rest, " ")
		out = append(out, tok)
		rest = after
	}
	return out
}

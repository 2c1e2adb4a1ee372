package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/runner/build/dockerfile"
)

// httpDir holds ADD's downloads, in the build directory: per URL (the
// hex sha256 of it), data (the content) and meta.json (remoteMeta).
const httpDir = "http"

// ErrChecksum: an ADD --checksum URL's content has another digest.
var ErrChecksum = errors.New("build: checksum mismatch")

// remoteMeta is what is known of a URL's last download.
type remoteMeta struct {
	URL          string        `json:"url"`
	ETag         string        `json:"etag,omitempty"`
	LastModified string        `json:"lastModified,omitempty"`
	Digest       digest.Digest `json:"digest"`
}

// remoteName is the name ADD gives a URL's file, as BuildKit names it:
// the last element of its path, or __unnamed__.
func remoteName(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if base := path.Base(u.Path); base != "." && base != "/" {
			return base
		}
	}
	return "__unnamed__"
}

// checkDigest fails with ErrChecksum, naming the URL, unless got is
// want (no want accepts anything).
func checkDigest(raw string, want, got digest.Digest) error {
	if want != "" && want != got {
		return fmt.Errorf("%w: %s: expected %s, got %s", ErrChecksum, raw, want, got)
	}
	return nil
}

// remote is the download cache of ADD.
type remote struct {
	dir    string
	client *http.Client
}

func (r *remote) paths(raw string) (dir, data, meta string) {
	sum := sha256.Sum256([]byte(raw))
	dir = filepath.Join(r.dir, hex.EncodeToString(sum[:]))
	return dir, filepath.Join(dir, "data"), filepath.Join(dir, "meta.json")
}

func (r *remote) cached(raw string) (remoteMeta, bool) {
	_, data, meta := r.paths(raw)
	b, err := os.ReadFile(meta)
	if err != nil {
		return remoteMeta{}, false
	}
	var m remoteMeta
	if json.Unmarshal(b, &m) != nil || m.URL != raw {
		return remoteMeta{}, false
	}
	if _, err := os.Stat(data); err != nil {
		return remoteMeta{}, false
	}
	return m, true
}

// fetch makes the download cache hold raw's current content, and returns
// what is known of it. A cached download is revalidated with its ETag
// and Last-Modified; with want (--checksum) set, a cached download of
// that digest is used without asking the server. A download whose
// digest is not want fails with ErrChecksum and is not kept.
func (r *remote) fetch(ctx context.Context, raw string, want digest.Digest) (remoteMeta, error) {
	old, have := r.cached(raw)
	if have && want != "" && old.Digest == want {
		return old, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return remoteMeta{}, fmt.Errorf("%w: ADD %s: %v", ErrInvalid, raw, err)
	}
	if have {
		if old.ETag != "" {
			req.Header.Set("If-None-Match", old.ETag)
		}
		if old.LastModified != "" {
			req.Header.Set("If-Modified-Since", old.LastModified)
		}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return remoteMeta{}, fmt.Errorf("ADD %s: %w", raw, err)
	}
	defer resp.Body.Close()
	if have && resp.StatusCode == http.StatusNotModified {
		return old, checkDigest(raw, want, old.Digest)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return remoteMeta{}, fmt.Errorf("%w: ADD %s: invalid response status %s", ErrNotFound, raw, resp.Status)
	}
	dir, data, meta := r.paths(raw)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return remoteMeta{}, fmt.Errorf("build: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".data-*")
	if err != nil {
		return remoteMeta{}, fmt.Errorf("build: %w", err)
	}
	defer os.Remove(tmp.Name())
	d := digest.Canonical.Digester()
	_, err = io.Copy(io.MultiWriter(tmp, d.Hash()), resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return remoteMeta{}, fmt.Errorf("ADD %s: %w", raw, err)
	}
	m := remoteMeta{URL: raw, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Digest: d.Digest()}
	if err := checkDigest(raw, want, m.Digest); err != nil {
		return remoteMeta{}, err
	}
	mb, _ := json.Marshal(m)
	if err := os.Rename(tmp.Name(), data); err != nil {
		return remoteMeta{}, fmt.Errorf("build: %w", err)
	}
	if err := writeFileAtomic(meta, mb); err != nil {
		return remoteMeta{}, err
	}
	return m, nil
}

// writeFileAtomic writes b to p through a temporary file renamed into
// place.
func writeFileAtomic(p string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("build: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	return os.Rename(tmp.Name(), p)
}

// remoteKeys are the cache-key parts of an ADD's URLs: the --checksum
// when given (nothing is fetched), else the content's digest, the URL
// fetched (or revalidated) to learn it.
func (b *builder) remoteKeys(ctx context.Context, cs *dockerfile.CopySpec) (string, error) {
	var parts []string
	for _, raw := range cs.URLs {
		if cs.Checksum != "" {
			parts = append(parts, raw+" "+cs.Checksum.String())
			continue
		}
		m, err := b.remote.fetch(ctx, raw, "")
		if err != nil {
			return "", err
		}
		parts = append(parts, raw+" "+m.Digest.String())
	}
	return strings.Join(parts, "\x00"), nil
}

// addRemote copies an ADD's URLs into rootfs: each fetched (or taken
// from the download cache) into the slot as a file of mode 0600 dated
// by its Last-Modified, as BuildKit's HTTP source makes it, then copied
// to the destination as a file of the context is (never unpacked).
func (b *builder) addRemote(ctx context.Context, s *slot, rootfs string, cs *dockerfile.CopySpec) error {
	for i, raw := range cs.URLs {
		m, err := b.remote.fetch(ctx, raw, cs.Checksum)
		if err != nil {
			return err
		}
		_, data, _ := b.remote.paths(raw)
		dir := s.path(fmt.Sprintf("http-%d", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("build: %w", err)
		}
		name := remoteName(raw)
		if err := copyFile(data, filepath.Join(dir, name), 0o600); err != nil {
			return err
		}
		if t, err := http.ParseTime(m.LastModified); err == nil {
			os.Chtimes(filepath.Join(dir, name), t, t)
		} else {
			now := time.Now()
			os.Chtimes(filepath.Join(dir, name), now, now)
		}
		src, err := openRoot(dir, nil, false)
		if err != nil {
			return err
		}
		one := *cs
		one.Add, one.Sources, one.Contents, one.URLs = false, []string{name}, nil, nil
		err = copyInto(ctx, rootfs, src, &one, s.dir)
		src.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies the file src to dst, made with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("build: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	return os.Chmod(dst, mode)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/integration"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/filesystem"
	"github.com/berth-registry/berth/storage/store"
)

// The web UI case: a root of uiRepos repositories holding uiTags tags in
// all, one of them uiBigRepo with uiBigTags tags, every tag its own image
// (a config of its own, layers shared), written straight through the store
// on a tmpfs (so that filling it takes seconds, not minutes of fsyncs); a
// berth serves it and the pages are timed. Issue 17's target: the
// repository list and the 500-tag repository page within 100 ms.
const (
	uiRepos   = 1000
	uiTags    = 10000
	uiBigRepo = "big/app"
	uiBigTags = 500
	uiTarget  = 100 * time.Millisecond
)

// uiCase fills the root, starts berth on it and times each page reps
// times after a first (cold) request.
func uiCase(ctx context.Context, berthBin, dir string, reps int, profileDir string) error {
	base := dir
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	root, err := os.MkdirTemp(base, "berth-bench-ui-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	fillStart := time.Now()
	if err := fillUIRoot(ctx, root); err != nil {
		return fmt.Errorf("filling the root: %w", err)
	}
	fmt.Printf("\nbench: ui case: %d repositories, %d tags (%s with %d) written in %.1fs under %s\n",
		uiRepos, uiTags, uiBigRepo, uiBigTags, time.Since(fillStart).Seconds(), root)

	o := integration.Options{Kind: integration.Berth, Binary: berthBin, Root: root, Dir: mkdir(dir, "ui"), Quiet: true}
	if profileDir != "" {
		pd, err := filepath.Abs(profileDir)
		if err != nil {
			return err
		}
		o.Args = []string{"--cpuprofile", filepath.Join(pd, "berth-ui.cpu.pprof")}
	}
	srv, err := integration.Start(ctx, o)
	if err != nil {
		return err
	}
	defer stopServer(srv, "berth")
	client := &http.Client{}
	pages := []struct{ name, path string }{
		{"repositories (HTML)", "/ui/"},
		{"repositories (JSON)", "/ui/api/repositories"},
		{uiBigRepo + ", 500 tags (HTML)", "/ui/r/" + uiBigRepo},
		{uiBigRepo + ", 500 tags (JSON)", "/ui/api/repositories/" + uiBigRepo},
	}
	fmt.Printf("\n  %-30s %10s %12s %10s %12s\n", "page", "cold", "median", "best", "bytes")
	var verdicts []string
	for _, p := range pages {
		cold, n, err := timedPage(ctx, client, srv.URL+p.path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		var times []time.Duration
		for range max(reps, 1) {
			d, _, err := timedPage(ctx, client, srv.URL+p.path)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			times = append(times, d)
		}
		slices.Sort(times)
		med := times[len(times)/2]
		fmt.Printf("  %-30s %10s %12s %10s %12d\n", p.name, ms(cold), ms(med), ms(times[0]), n)
		verdicts = append(verdicts, fmt.Sprintf("%s %s", p.name, ms(med)))
	}
	fmt.Printf("\nServer time as the client sees it on loopback: from sending the GET to the last byte.\n"+
		"Cold: the first request after the start (each repository's summary read from storage); then %d warm requests.\n"+
		"Target (warm medians): within %s: %s.\n", max(reps, 1), uiTarget, verdicts)
	return nil
}

// timedPage GETs url and returns how long the whole response took and its size.
func timedPage(ctx context.Context, client *http.Client, url string) (time.Duration, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return d, n, nil
}

// fillUIRoot writes the case's repositories through the store.
func fillUIRoot(ctx context.Context, root string) error {
	d, err := filesystem.New(root)
	if err != nil {
		return err
	}
	defer d.Close()
	st := store.New(d, store.Options{ManifestCacheBytes: -1})
	layers := [][]byte{bytes.Repeat([]byte("a"), 4<<10), bytes.Repeat([]byte("b"), 64<<10)}
	put := func(repo string, b []byte) (map[string]any, error) {
		dg := digest.FromBytes(b)
		if _, err := st.PutBlob(ctx, repo, bytes.NewReader(b), dg); err != nil {
			return nil, err
		}
		return map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": len(b)}, nil
	}
	repoOf := func(i int) (string, int) { // the repository of the i-th tag, and the tag's number in it
		if i < uiBigTags {
			return uiBigRepo, i
		}
		j := i - uiBigTags
		r := j % (uiRepos - 1)
		return fmt.Sprintf("team-%02d/app-%03d", r%50, r), j / (uiRepos - 1)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range uiTags {
		repo, n := repoOf(i)
		var descs []any
		for _, l := range layers {
			desc, err := put(repo, l)
			if err != nil {
				return err
			}
			descs = append(descs, desc)
		}
		cfg, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"created": created.Add(time.Duration(i) * time.Minute), "config": map[string]any{"Cmd": []string{"app", fmt.Sprint(i)}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
		if err != nil {
			return err
		}
		c, err := put(repo, cfg)
		if err != nil {
			return err
		}
		c["mediaType"] = "application/vnd.oci.image.config.v1+json"
		body, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": manifest.MediaTypeOCIManifest, "config": c, "layers": descs})
		if err != nil {
			return err
		}
		if _, err := st.PutManifest(ctx, repo, []string{fmt.Sprintf("v%d", n)}, "", manifest.MediaTypeOCIManifest, body); err != nil {
			return err
		}
	}
	return nil
}

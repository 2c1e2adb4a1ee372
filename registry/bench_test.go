package registry_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/registry"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/store"
)

// BenchmarkManifestGetByTag measures the handler path of the hottest request,
// without the network.
func BenchmarkManifestGetByTag(b *testing.B) {
	for _, observed := range []bool{false, true} {
		name := "plain"
		if observed {
			name = "metrics+accesslog"
		}
		b.Run(name, func(b *testing.B) {
			st := store.New(inmemory.New(), store.Options{})
			o := registry.Options{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if observed {
				o.Metrics = prometheus.NewRegistry()
				o.AccessLog = true
			}
			reg, err := registry.New(o)
			if err != nil {
				b.Fatal(err)
			}
			seedForBench(b, reg)
			r := httptest.NewRequest("GET", "/v2/"+repo+"/manifests/latest", nil)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				reg.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// seedForBench pushes an image tagged latest to repo through h.
func seedForBench(b *testing.B, h http.Handler) {
	config := newBlob([]byte(`{"os":"linux"}`))
	layer := randomBlob(1, 1000)
	for _, bl := range []blob{config, layer} {
		w := serve(h, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+bl.digest.String(), bytes.NewReader(bl.data), int64(len(bl.data)), nil)
		if w.Code != http.StatusCreated {
			b.Fatalf("pushing a blob: %d %s", w.Code, w.Body)
		}
	}
	m, err := json.Marshal(v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    config.desc(configType),
		Layers:    []v1.Descriptor{layer.desc(layerType)},
	})
	if err != nil {
		b.Fatal(err)
	}
	w := serve(h, "PUT", "/v2/"+repo+"/manifests/latest", bytes.NewReader(m), int64(len(m)),
		map[string]string{"Content-Type": v1.MediaTypeImageManifest})
	if w.Code != http.StatusCreated {
		b.Fatalf("pushing the manifest: %d %s", w.Code, w.Body)
	}
}

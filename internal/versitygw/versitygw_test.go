package versitygw

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStart starts a server in a subtest, checks that it answers and that
// the bucket is there, and that it is gone once the subtest has ended.
func TestStart(t *testing.T) {
	var s *Server
	t.Run("running", func(t *testing.T) {
		start := time.Now()
		s = Start(t, "bucket")
		t.Logf("started in %v", time.Since(start))
		if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") || s.AccessKey == "" || s.SecretKey == "" || s.Bucket != "bucket" {
			t.Errorf("Start returned %+v", s)
		}
		if fi, err := os.Stat(filepath.Join(s.Dir, "bucket")); err != nil || !fi.IsDir() {
			t.Errorf("bucket directory: %v, %v", fi, err)
		}
		resp, err := http.Get(s.Endpoint + "/bucket")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous GET of the bucket: %s, want 403", resp.Status)
		}
		t.Cleanup(func() { t.Logf("stopping at %v", time.Now().Format(time.StampMilli)) })
	})
	if s == nil {
		return
	}
	t.Logf("stopped at %v", time.Now().Format(time.StampMilli))
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.Endpoint, "http://"), time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens at %s after the test ended", s.Endpoint)
	}
}

func TestRequire(t *testing.T) {
	t.Setenv("BERTH_REQUIRE_S3", "1")
	if !Require() {
		t.Error("Require() = false with BERTH_REQUIRE_S3=1")
	}
	t.Setenv("BERTH_REQUIRE_S3", "")
	if Require() {
		t.Error("Require() = true without BERTH_REQUIRE_S3")
	}
}

func TestBinary(t *testing.T) {
	t.Setenv("VERSITYGW", filepath.Join(t.TempDir(), "missing"))
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), "$VERSITYGW") {
		t.Errorf("Binary() with $VERSITYGW naming a missing file: %v, want an error about $VERSITYGW", err)
	}
}

func TestValidBucket(t *testing.T) {
	for name, want := range map[string]bool{
		"berth": true, "berth-test.1": true, "abc": true,
		"b": false, "ab": false, "Berth": false, "-berth": false, "berth-": false, "a..b": false, "a_b": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
	} {
		if got := validBucket(name); got != want {
			t.Errorf("validBucket(%q) = %v, want %v", name, got, want)
		}
	}
}

package inmemory_test

import (
	"io"
	"testing"

	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/inmemory"
	"github.com/berth-registry/berth/storage/storagetest"
)

func TestDriver(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Driver { return inmemory.New() })
}

func BenchmarkDriver(b *testing.B) {
	storagetest.Bench(b, func(*testing.B) storage.Driver { return inmemory.New() })
}

// TestAppendSnapshots checks that two append writers continuing the same
// content do not share memory with each other or with an open reader.
func TestAppendSnapshots(t *testing.T) {
	ctx := t.Context()
	d := inmemory.New()
	if err := storage.WriteAll(ctx, d, "/f", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	r, err := d.Reader(ctx, "/f", 0)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := d.Writer(ctx, "/f", true)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := d.Writer(ctx, "/f", true)
	if err != nil {
		t.Fatal(err)
	}
	w1.Write([]byte("111"))
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}
	w2.Write([]byte("222"))
	if got, err := storage.ReadAll(ctx, d, "/f"); err != nil || string(got) != "abc111" {
		t.Errorf("content = %q, %v; want %q (an uncommitted writer changed it)", got, err, "abc111")
	}
	if err := w2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "abc" {
		t.Errorf("reader opened before the writers read %q, want %q", got, "abc")
	}
	if got, err := storage.ReadAll(ctx, d, "/f"); err != nil || string(got) != "abc222" {
		t.Errorf("content = %q, %v; want %q (the last writer's)", got, err, "abc222")
	}
}

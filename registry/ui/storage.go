package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/gc"
)

// StoragePage is the storage page's data: what `berth du` shows, and the
// last and next garbage collections.
type StoragePage struct {
	Usage gc.UsageReport `json:"usage"`
	// LastRun is the last collection's record (nil: none recorded).
	LastRun *gc.RunRecord `json:"lastRun,omitempty"`
	// NextRun is when the server's periodic collection runs next; zero
	// when it has none (gc.interval 0: collections are `berth gc` runs).
	NextRun time.Time `json:"nextRun"`
}

// StorageSource is a Source that also has the storage page's data. The
// page is served only when the Source is one.
type StorageSource interface {
	Storage(ctx context.Context) (StoragePage, error)
}

// WithStorage gives s the storage page: usage reports from rep (shared
// with the registry's usage API) and the next periodic collection from
// next (nil: none).
func (s *StoreSource) WithStorage(rep *gc.UsageReporter, next func() time.Time) *StoreSource {
	s.usage, s.nextGC = rep, next
	return s
}

// Storage implements StorageSource.
func (s *StoreSource) Storage(ctx context.Context) (StoragePage, error) {
	if s.usage == nil {
		return StoragePage{}, errRouteUnknown
	}
	rep, err := s.usage.Report(ctx, "")
	if err != nil {
		return StoragePage{}, err
	}
	p := StoragePage{Usage: rep}
	if r, ok, err := gc.LastRun(ctx, s.st); err != nil {
		return StoragePage{}, err
	} else if ok {
		p.LastRun = &r
	}
	if s.nextGC != nil {
		p.NextRun = s.nextGC()
	}
	return p, nil
}

// storageSource returns the Source as a StorageSource, nil if it is none.
func (u *UI) storageSource() StorageSource {
	ss, _ := u.src.(StorageSource)
	if st, ok := u.src.(*StoreSource); ok && st.usage == nil {
		return nil
	}
	return ss
}

// mayCatalog reports whether v may see every repository's usage (what the
// registry's catalog and usage API need).
func (u *UI) mayCatalog(v visitor) bool {
	if v.all {
		return true
	}
	g := u.access.Grant(v.user, auth.Access{Type: auth.TypeRegistry, Name: "catalog", Actions: []string{auth.ActionAll}})
	return len(g.Actions) == 1
}

// storagePage answers GET /ui/storage and, as JSON, /ui/api/storage.
func (u *UI) storagePage(w http.ResponseWriter, r *http.Request, asJSON bool) error {
	ss := u.storageSource()
	v := u.visitor(w, r)
	if ss == nil || !u.mayCatalog(v) {
		return errRouteUnknown
	}
	p, err := ss.Storage(r.Context())
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, p)
	}
	data := u.base(r, "Storage")
	data.see(v)
	data.Page = p
	return u.render(w, "storage", data)
}

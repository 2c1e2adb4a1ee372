package registry

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// readyTimeout bounds the storage ping of /readyz.
const readyTimeout = 2 * time.Second

// healthz answers 200 while the process serves requests.
func (reg *Registry) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeText(w, r, "ok\n")
}

// readyz answers 200 when the storage answers within readyTimeout, else
// 503. A full storage still serves reads: 200, and the body says that
// writes are refused.
func (reg *Registry) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := reg.store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", errNotReady, err)
	}
	if reg.storageFull() {
		return writeText(w, r, "ok: storage full, writes are refused (507)\n")
	}
	return writeText(w, r, "ok\n")
}

func writeText(w http.ResponseWriter, r *http.Request, s string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(s)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, err := w.Write([]byte(s))
		return err
	}
	return nil
}

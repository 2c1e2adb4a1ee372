package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/berth-registry/berth/registry/proxy"

	"github.com/gorilla/mux"
)

// maxPageSize caps the n of tag and catalog listings.
const maxPageSize = 1000

// listTags answers GET /v2/<name>/tags/list[?n=<n>&last=<last>].
func (reg *Registry) listTags(w http.ResponseWriter, r *http.Request) error {
	repo := mux.Vars(r)["name"]
	p, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	var tags []string
	if t := target(r); t != nil {
		var res proxy.Result
		tags, res, err = reg.cache.Tags(r.Context(), t)
		noteCache(w, res, err)
	} else {
		tags, err = reg.store.Tags(r.Context(), repo)
	}
	if err != nil {
		return err
	}
	page, more := p.apply(tags)
	if more {
		p.setLink(w, "/v2/"+repo+"/tags/list", page[len(page)-1])
	}
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, page})
}

// catalog answers GET /v2/_catalog[?n=<n>&last=<last>].
func (reg *Registry) catalog(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	repos, err := reg.store.Repositories(r.Context())
	if err != nil {
		return err
	}
	page, more := p.apply(repos)
	if more {
		p.setLink(w, "/v2/_catalog", page[len(page)-1])
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{page})
}

// page is the n and last of a listing request.
type page struct {
	n    int // -1: no limit asked
	last string
}

func parsePage(q url.Values) (page, error) {
	p := page{n: -1, last: q.Get("last")}
	if q.Has("n") {
		s := q.Get("n")
		n, err := strconv.Atoi(s)
		if errors.Is(err, strconv.ErrRange) && s != "" && s[0] != '-' {
			n, err = maxPageSize, nil // a number too big for an int is clamped like any big n
		}
		if err != nil || n < 0 {
			if len(s) > 20 && err != nil {
				s = s[:20] + "..."
			}
			return page{}, fmt.Errorf("%w: n=%q is not a non-negative number", errPaginationNumberInvalid, s)
		}
		p.n = min(n, maxPageSize)
	}
	return p, nil
}

// apply selects, from sorted, the entries after last, at most n of them, and
// reports whether more remain. The result is never nil.
func (p page) apply(sorted []string) ([]string, bool) {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] > p.last })
	rest := sorted[i:]
	if rest == nil {
		rest = []string{}
	}
	if p.n < 0 || len(rest) <= p.n {
		return rest, false
	}
	return rest[:p.n], p.n > 0
}

// setLink adds the RFC 8288 link to the next page.
func (p page) setLink(w http.ResponseWriter, path, last string) {
	w.Header().Set("Link", fmt.Sprintf(`<%s?last=%s&n=%d>; rel="next"`, path, url.QueryEscape(last), p.n))
}

// writeJSON answers 200 with v as JSON.
func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

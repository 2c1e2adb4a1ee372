package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage/store"
)

// reference is a manifest reference from a URL: a digest or a tag.
type reference struct {
	digest digest.Digest // set for a digest reference
	tag    string        // set for a tag reference
}

// parseReference tells a digest (it has a colon, which tags cannot) from a
// tag, and validates either.
//
// Reading or deleting by a string that is no valid tag (and no digest) cannot
// find anything, so lookupReference answers MANIFEST_UNKNOWN (404) for it, as
// clients and the conformance suite expect; pushing with one is
// MANIFEST_INVALID.
func parseReference(s string) (reference, error) {
	if strings.Contains(s, ":") {
		d, err := manifest.ParseDigest(s)
		return reference{digest: d}, err
	}
	if err := manifest.ValidateTag(s); err != nil {
		return reference{}, err
	}
	return reference{tag: s}, nil
}

// lookupReference is parseReference for GET, HEAD and DELETE.
func lookupReference(repo, s string) (reference, error) {
	ref, err := parseReference(s)
	if errors.Is(err, manifest.ErrTagInvalid) {
		return ref, fmt.Errorf("%w: %q is not a valid tag, so %s has no such manifest (%v)", store.ErrManifestUnknown, s, repo, err)
	}
	return ref, err
}

// getManifest answers GET and HEAD /v2/<name>/manifests/<reference>.
func (reg *Registry) getManifest(w http.ResponseWriter, r *http.Request) error {
	vars := mux.Vars(r)
	repo := vars["name"]
	ref, err := lookupReference(repo, vars["reference"])
	if err != nil {
		return err
	}
	ctx := r.Context()
	var m store.Manifest
	switch t := target(r); {
	case t != nil:
		var s proxy.Served
		s, err = reg.cache.Manifest(ctx, t, ref.tag, ref.digest)
		m = s.Manifest
		noteCache(w, s.Result, err)
		if s.Result == proxy.Stale {
			// RFC 7234's "response is stale"; the text says why.
			w.Header().Set("Warning", `110 berth "stale: upstream `+t.Upstream()+` could not confirm the tag"`)
		}
	case ref.digest != "":
		m, err = reg.store.GetManifest(ctx, repo, ref.digest)
	default:
		m, err = reg.store.GetManifestByTag(ctx, repo, ref.tag)
	}
	if err != nil {
		return err
	}
	mediaType := m.MediaType
	if mediaType == "" {
		mediaType = "application/octet-stream"
	}
	// The four values in one allocation, under keys in canonical form.
	v := []string{mediaType, strconv.Itoa(len(m.Body)), m.Digest.String(), `"` + m.Digest.String() + `"`}
	h := w.Header()
	h["Content-Type"], h["Content-Length"], h["Docker-Content-Digest"], h["Etag"] = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4]
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		if _, err := w.Write(m.Body); err != nil {
			return fmt.Errorf("sending manifest %s: %w", m.Digest, err)
		}
	}
	return nil
}

// MaxPushTags is the most tags one manifest PUT may apply with ?tag=
// parameters (the spec asks for at least 10).
const MaxPushTags = 100

// pushTags returns the tags a manifest PUT applies: the reference's tag, if
// it is one, and every ?tag= parameter (OCI distribution v1.1 "tag
// parameters"), each validated, without repeats.
func pushTags(ref reference, params []string) ([]string, error) {
	if len(params) > MaxPushTags {
		return nil, fmt.Errorf("%w: %d tag parameters, at most %d are accepted in one push", errTooManyTags, len(params), MaxPushTags)
	}
	var tags []string
	if ref.tag != "" {
		tags = append(tags, ref.tag)
	}
	for _, t := range params {
		if err := manifest.ValidateTag(t); err != nil {
			return nil, fmt.Errorf("tag parameter: %w", err)
		}
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags, nil
}

// putManifest answers PUT /v2/<name>/manifests/<reference>. The body is never
// read beyond manifest.MaxSize+1 bytes, and not at all when Content-Length
// already says it is too large.
func (reg *Registry) putManifest(w http.ResponseWriter, r *http.Request) error {
	vars := mux.Vars(r)
	repo := vars["name"]
	ref, err := parseReference(vars["reference"])
	if err != nil {
		return err
	}
	if r.ContentLength > manifest.MaxSize {
		return fmt.Errorf("%w: Content-Length is %d", manifest.ErrTooLarge, r.ContentLength)
	}
	tagParams := r.URL.Query()["tag"]
	tags, err := pushTags(ref, tagParams)
	if err != nil {
		return err
	}
	body, err := manifest.Read(r.Body)
	if err != nil {
		return err
	}
	res, err := reg.store.PutManifest(r.Context(), repo, tags, ref.digest, r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	if len(res.Absent) > 0 {
		reg.log.LogAttrs(r.Context(), slog.LevelInfo, "sparse manifest accepted", slog.String("repository", repo),
			slog.String("digest", res.Digest.String()), slog.Int("absent", len(res.Absent)),
			slog.String("first_absent", res.Absent[0].String()))
	}
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/manifests/"+res.Digest.String())
	h.Set("Docker-Content-Digest", res.Digest.String())
	if res.Manifest != nil && res.Manifest.Subject != nil {
		h.Set("Oci-Subject", res.Manifest.Subject.Digest.String())
	}
	if len(tagParams) > 0 {
		h.Set("Oci-Tag", strings.Join(tags, ", "))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteManifest answers DELETE /v2/<name>/manifests/<reference>: by digest
// it removes the manifest and its tags, by tag only the tag.
func (reg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request) error {
	if !reg.deleteEnabled {
		return fmt.Errorf("%w: deleting manifests and tags is disabled on this registry", errUnsupported)
	}
	vars := mux.Vars(r)
	repo := vars["name"]
	ref, err := lookupReference(repo, vars["reference"])
	if err != nil {
		return err
	}
	if ref.digest != "" {
		err = reg.store.DeleteManifest(r.Context(), repo, ref.digest)
	} else {
		err = reg.store.DeleteTag(r.Context(), repo, ref.tag)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

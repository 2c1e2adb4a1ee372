package registry

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/storage/store"
)

// startUpload answers POST /v2/<name>/blobs/uploads/: a cross-repository
// mount (?mount=<digest>[&from=<repo>]), a monolithic upload (?digest=<digest>
// with the blob as body), or a new upload session.
func (reg *Registry) startUpload(w http.ResponseWriter, r *http.Request) error {
	repo := mux.Vars(r)["name"]
	q := r.URL.Query()
	ctx := r.Context()

	if q.Has("mount") {
		d, err := manifest.ParseDigest(q.Get("mount"))
		if err != nil {
			return err
		}
		from := q.Get("from")
		if from != "" {
			if err := manifest.ValidateName(from); err != nil {
				return err
			}
		}
		if reg.mountAllowed(r, from) {
			// Without from, any blob the registry holds is mounted (automatic
			// cross-mount: the client proves it knows the digest).
			_, err = reg.store.MountBlob(ctx, repo, from, d)
			switch {
			case err == nil:
				blobCreated(w, repo, d)
				return nil
			case !errors.Is(err, store.ErrBlobUnknown):
				return err
			}
		}
		// Not mountable, or not allowed: the client uploads the blob in a
		// new session.
	} else if q.Has("digest") {
		d, err := manifest.ParseDigest(q.Get("digest"))
		if err != nil {
			return err
		}
		done, err := reg.uploadStarted(r)
		if err != nil {
			return err
		}
		_, err = reg.store.PutBlob(ctx, repo, r.Body, d)
		done()
		if err != nil {
			return err
		}
		blobCreated(w, repo, d)
		return nil
	}

	u, err := reg.store.StartUpload(ctx, repo)
	if err != nil {
		return err
	}
	uploadStatus(w, u, http.StatusAccepted)
	return nil
}

// mountAllowed reports whether r may mount a blob from the repository from
// ("" for automatic cross-mount). Without auth, always. With auth, the
// identity must be allowed to pull from; automatic cross-mount is off, since
// it cannot know which repository holds the blob nor whether the identity may
// pull it. A refusal is not an error: the client uploads the blob instead.
func (reg *Registry) mountAllowed(r *http.Request, from string) bool {
	if reg.authorizer == nil {
		return true
	}
	return from != "" && identity(r).Allowed(auth.Access{
		Type: auth.TypeRepository, Name: from, Actions: []string{auth.ActionPull}})
}

// getUpload answers GET /v2/<name>/blobs/uploads/<id>: how much of the
// upload the registry holds.
func (reg *Registry) getUpload(w http.ResponseWriter, r *http.Request) error {
	repo, id, err := uploadVars(r)
	if err != nil {
		return err
	}
	u, err := reg.store.StatUpload(r.Context(), repo, id)
	if err != nil {
		return err
	}
	uploadStatus(w, u, http.StatusNoContent)
	return nil
}

// patchUpload answers PATCH /v2/<name>/blobs/uploads/<id>: appends a chunk,
// which with Content-Range must start where the upload ends.
func (reg *Registry) patchUpload(w http.ResponseWriter, r *http.Request) error {
	repo, id, err := uploadVars(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	start, body, err := chunk(r)
	var done func()
	if err == nil {
		done, err = reg.uploadStarted(r)
	}
	if err != nil {
		// Say where the upload stands so that the client can resume.
		if u, serr := reg.store.StatUpload(ctx, repo, id); serr == nil {
			setUploadHeaders(w, u)
		} else {
			return serr
		}
		return err
	}
	u, err := reg.store.AppendUpload(ctx, repo, id, start, body)
	done()
	if err != nil {
		var re *store.RangeError
		if errors.As(err, &re) {
			setUploadHeaders(w, u)
		}
		return err
	}
	uploadStatus(w, u, http.StatusAccepted)
	return nil
}

// finishUpload answers PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>:
// appends the final chunk, if any, verifies the whole and makes it a blob.
func (reg *Registry) finishUpload(w http.ResponseWriter, r *http.Request) error {
	repo, id, err := uploadVars(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if !q.Has("digest") {
		return fmt.Errorf("%w: the digest query parameter is required to complete an upload", manifest.ErrDigestInvalid)
	}
	d, err := manifest.ParseDigest(q.Get("digest"))
	if err != nil {
		return err
	}
	ctx := r.Context()
	start, body, err := chunk(r)
	if err != nil {
		return err
	}
	done, err := reg.uploadStarted(r)
	if err != nil {
		return err
	}
	defer done()
	if start >= 0 {
		// A final chunk with Content-Range: let the store check where it
		// starts, then finish with nothing more to append.
		u, err := reg.store.AppendUpload(ctx, repo, id, start, body)
		if err != nil {
			var re *store.RangeError
			if errors.As(err, &re) {
				setUploadHeaders(w, u)
			}
			return err
		}
		body = http.NoBody
	}
	if _, err := reg.store.FinishUpload(ctx, repo, id, body, d); err != nil {
		return err
	}
	blobCreated(w, repo, d)
	return nil
}

// cancelUpload answers DELETE /v2/<name>/blobs/uploads/<id>. It is served
// even when deletes are disabled: it discards an unfinished upload, not
// content.
func (reg *Registry) cancelUpload(w http.ResponseWriter, r *http.Request) error {
	repo, id, err := uploadVars(r)
	if err != nil {
		return err
	}
	if err := reg.store.CancelUpload(r.Context(), repo, id); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// uploadVars returns the repository and the upload ID of an upload URL, or
// BLOB_UPLOAD_UNKNOWN for an ID the store could not have handed out.
func uploadVars(r *http.Request) (repo, id string, err error) {
	vars := mux.Vars(r)
	repo, id = vars["name"], vars["id"]
	if !store.ValidUploadID(id) {
		return "", "", fmt.Errorf("%w: %q is not an upload id", store.ErrUploadUnknown, shorten(id))
	}
	return repo, id, nil
}

// chunk reads the Content-Range of an upload request. Without one, start is
// -1 (append wherever the upload ends). With one, the body is limited to the
// range's length, which must agree with Content-Length when that is known.
func chunk(r *http.Request) (start int64, body io.Reader, err error) {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return -1, r.Body, nil
	}
	first, last, ok := parseContentRange(cr)
	if !ok {
		return 0, nil, fmt.Errorf("%w: Content-Range %q is not <start>-<end>", errUploadInvalid, shorten(cr))
	}
	if last < first {
		return 0, nil, fmt.Errorf("%w: Content-Range %q ends before it starts", errRangeNotSatisfiable, cr)
	}
	if last-first == math.MaxInt64 {
		// Its length, 2^63 bytes, is no int64: the limit below would wrap
		// negative and the chunk be taken as empty.
		return 0, nil, fmt.Errorf("%w: Content-Range %q is longer than any blob", errRangeNotSatisfiable, shorten(cr))
	}
	n := last - first + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		return 0, nil, fmt.Errorf("%w: Content-Range %q is %d bytes but Content-Length is %d",
			errRangeNotSatisfiable, cr, n, r.ContentLength)
	}
	return first, io.LimitReader(r.Body, n), nil
}

// parseContentRange parses an upload chunk's Content-Range, "<start>-<end>"
// (inclusive), also accepting the RFC 9110 form "bytes <start>-<end>/<size>".
func parseContentRange(s string) (first, last int64, ok bool) {
	s = strings.TrimSpace(s)
	if rest, found := strings.CutPrefix(s, "bytes "); found {
		s = strings.TrimSpace(rest)
		if i := strings.IndexByte(s, '/'); i >= 0 {
			s = s[:i]
		}
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	if first, ok = parseDecimal(a); !ok {
		return 0, 0, false
	}
	if last, ok = parseDecimal(b); !ok {
		return 0, 0, false
	}
	return first, last, true
}

// uploadStatus answers with where upload u stands.
func uploadStatus(w http.ResponseWriter, u store.Upload, status int) {
	setUploadHeaders(w, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func setUploadHeaders(w http.ResponseWriter, u store.Upload) {
	end := u.Size - 1
	if end < 0 {
		end = 0 // an empty upload is "0-0", as clients expect
	}
	h := w.Header()
	h.Set("Location", "/v2/"+u.Repo+"/blobs/uploads/"+u.ID)
	h.Set("Range", "0-"+strconv.FormatInt(end, 10))
	h.Set("Docker-Upload-Uuid", u.ID)
}

// blobCreated answers 201 for blob d of repo.
func blobCreated(w http.ResponseWriter, repo string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// shorten cuts a client-supplied value for an error message.
func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

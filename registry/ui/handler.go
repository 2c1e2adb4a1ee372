package ui

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/manifest"
)

// Prefix is the path the UI is served under; the handler expects full
// request paths (mount it at Prefix without stripping it).
const Prefix = "/ui/"

// Options configure the UI.
type Options struct {
	// Source reads what the pages show; required.
	Source Source
	// Logger receives the errors behind 500 pages; nil: slog.Default().
	Logger *slog.Logger
	// PullHost is the host[:port] users pull from, used in the pull
	// commands the pages offer to copy; "": the request's Host.
	PullHost string
	// DeleteEnabled shows the delete forms and accepts the delete POSTs;
	// when false the forms are not shown and the POSTs are refused (403).
	DeleteEnabled bool
	// Access, if set, signs visitors in and decides what each may see and
	// do (see Access); nil: no sign-in, everyone may do everything.
	Access Access
	// SessionKey signs the session cookies (32 bytes or more); replicas
	// behind one address need the same. nil: a random key, so sessions
	// end with the process.
	SessionKey []byte
}

// UI is the web UI's HTTP handler: the pages, the JSON API and the static
// files, everything under Prefix.
type UI struct {
	src           Source
	log           *slog.Logger
	pullHost      string
	deleteEnabled bool
	access        Access // nil: no sign-in
	sessionKey    []byte

	pages         map[string]*template.Template
	static        fs.FS
	staticVersion string
	now           func() time.Time // the clock of relative times; tests set it
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New builds the UI's handler; it fails only if Source is nil (or an
// embedded template does not parse, which the tests rule out).
func New(opts Options) (*UI, error) {
	if opts.Source == nil {
		return nil, errors.New("ui: no Source")
	}
	u := &UI{
		src:           opts.Source,
		log:           opts.Logger,
		pullHost:      opts.PullHost,
		deleteEnabled: opts.DeleteEnabled,
		access:        opts.Access,
		sessionKey:    opts.SessionKey,
		now:           time.Now,
	}
	if len(u.sessionKey) < 32 {
		u.sessionKey = []byte(rand.Text() + rand.Text())
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	u.static = static
	if u.staticVersion, err = contentVersion(static); err != nil {
		return nil, err
	}
	if u.pages, err = u.parseTemplates(); err != nil {
		return nil, err
	}
	return u, nil
}

// contentVersion is a short hash of every static file, the version in
// their URLs: a new build changes the URLs of changed files, so they can
// be cached for good.
func contentVersion(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// The errors the handlers return besides the Source's; errorTable maps
// them to statuses.
var (
	errRouteUnknown   = errors.New("no such page")
	errMethod         = errors.New("method not allowed")
	errCrossOrigin    = errors.New("cross-origin request refused")
	errDeleteDisabled = errors.New("deleting is turned off on this registry")
	errBadRequest     = errors.New("bad request")
)

// errorClass is what a family of errors becomes: a status and the text
// shown. Errors not in errorTable are 500s whose text is logged, not shown.
type errorClass struct {
	err     error
	status  int
	message string // "": the error's own text (it names only what the user sent)
}

// errorTable is the one place the UI's errors become statuses; the first
// match wins.
var errorTable = []errorClass{
	{err: ErrNotFound, status: http.StatusNotFound, message: "Not found: no such repository, tag or manifest."},
	{err: manifest.ErrNameInvalid, status: http.StatusNotFound},
	{err: errRouteUnknown, status: http.StatusNotFound, message: "No such page."},
	{err: manifest.ErrDigestInvalid, status: http.StatusBadRequest},
	{err: manifest.ErrTagInvalid, status: http.StatusBadRequest},
	{err: errBadRequest, status: http.StatusBadRequest},
	{err: errMethod, status: http.StatusMethodNotAllowed},
	{err: errCrossOrigin, status: http.StatusForbidden, message: "Refused: the form was not sent from this registry's own pages."},
	{err: errDeleteDisabled, status: http.StatusForbidden},
	{err: errCSRF, status: http.StatusForbidden},
	{err: errForbidden, status: http.StatusForbidden},
}

// classify returns the status and the message to show for err.
func classify(err error) (int, string) {
	for _, c := range errorTable {
		if errors.Is(err, c.err) {
			if c.message != "" {
				return c.status, c.message
			}
			return c.status, err.Error()
		}
	}
	return http.StatusInternalServerError, "Something went wrong on the server; the error is in its log."
}

// methodError is a wrong method, with the methods the path allows.
type methodError struct{ allow string }

func (e methodError) Error() string { return "method not allowed; this path allows " + e.allow }
func (e methodError) Unwrap() error { return errMethod }

// setSecurityHeaders sets the headers every response carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// ServeHTTP routes every request under Prefix. The URL scheme (a name
// cannot contain '@' or a "-" component, so none of these can be mistaken
// for a repository name):
//
//	GET  /ui/                                   repositories (?q= filter, ?sort=name|tags|size|pushed, ?order=asc|desc)
//	GET  /ui/r/<name>                           repository (?sort=pushed|created|name|size, ?order=)
//	GET  /ui/r/<name>/@<digest>                 image (a manifest: image, index or artifact)
//	POST /ui/r/<name>/-/delete-tag              delete the tag in form field "tag"
//	POST /ui/r/<name>/@<digest>/delete          delete the manifest and every tag on it
//	GET  /ui/api/repositories                   JSON: []Repository
//	GET  /ui/api/repositories/<name>            JSON: RepositoryPage
//	GET  /ui/api/repositories/<name>/manifests/<digest>  JSON: Image
//	GET  /ui/static/<version>/<file>            embedded CSS and JS
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	p := r.URL.Path
	var err error
	switch {
	case p == "/ui":
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	case p == Prefix:
		err = u.get(w, r, u.repositoriesPage)
	case p == Prefix+"storage":
		err = u.get(w, r, func(w http.ResponseWriter, r *http.Request) error { return u.storagePage(w, r, false) })
	case p == Prefix+"api/storage":
		err = u.get(w, r, func(w http.ResponseWriter, r *http.Request) error { return u.storagePage(w, r, true) })
	case p == Prefix+"login" && r.Method == http.MethodPost:
		err = u.login(w, r)
	case p == Prefix+"login":
		err = u.get(w, r, u.loginPage)
	case p == Prefix+"logout":
		if r.Method != http.MethodPost {
			err = methodError{allow: "POST"}
		} else {
			err = u.logout(w, r)
		}
	case strings.HasPrefix(p, Prefix+"r/"):
		err = u.routeRepository(w, r, strings.TrimPrefix(p, Prefix+"r/"))
	case p == Prefix+"api/repositories":
		err = u.get(w, r, u.apiRepositories)
	case strings.HasPrefix(p, Prefix+"api/repositories/"):
		err = u.routeAPI(w, r, strings.TrimPrefix(p, Prefix+"api/repositories/"))
	case strings.HasPrefix(p, Prefix+"static/"):
		err = u.get(w, r, func(w http.ResponseWriter, r *http.Request) error {
			return u.serveStatic(w, r, strings.TrimPrefix(p, Prefix+"static/"))
		})
	default:
		err = errRouteUnknown
	}
	if err != nil {
		u.writeError(w, r, err)
	}
}

// get runs h for GET and HEAD, and refuses other methods.
func (u *UI) get(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request) error) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodError{allow: "GET, HEAD"}
	}
	return h(w, r)
}

// post runs h for a delete in repository repo: a same-origin POST, when
// deleting is enabled, carrying the visitor's CSRF token, from a visitor
// the access grants delete on repo.
func (u *UI) post(w http.ResponseWriter, r *http.Request, repo string, h func(http.ResponseWriter, *http.Request) error) error {
	if r.Method != http.MethodPost {
		return methodError{allow: "POST"}
	}
	if !u.deleteEnabled {
		return errDeleteDisabled
	}
	v, err := u.form(w, r)
	if err != nil {
		return err
	}
	if !u.may(v, repo, auth.ActionDelete) {
		return errForbidden
	}
	return h(w, r)
}

// sameOrigin reports whether a POST comes from this site's own pages: its
// Origin header (or, without one, its Referer) names the request's host.
// A request with neither is refused: browsers send Origin with every POST,
// and the pages' Referrer-Policy keeps Referer for same-origin requests.
// Only the host is compared, not the scheme, as a TLS-terminating proxy may
// hide it; an attacker would have to serve pages from this very host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return false
	}
	o, err := url.Parse(src)
	if err != nil || (o.Scheme != "http" && o.Scheme != "https") {
		return false
	}
	return o.Host != "" && strings.EqualFold(o.Host, r.Host)
}

// routeRepository routes what follows /ui/r/.
func (u *UI) routeRepository(w http.ResponseWriter, r *http.Request, rest string) error {
	if name, after, ok := strings.Cut(rest, "/@"); ok {
		if err := manifest.ValidateName(name); err != nil {
			return err
		}
		ds, action, _ := strings.Cut(after, "/")
		d, err := manifest.ParseDigest(ds)
		if err != nil {
			return err
		}
		switch action {
		case "":
			return u.get(w, r, func(w http.ResponseWriter, r *http.Request) error { return u.imagePage(w, r, name, d) })
		case "delete":
			return u.post(w, r, name, func(w http.ResponseWriter, r *http.Request) error { return u.deleteManifest(w, r, name, d) })
		}
		return errRouteUnknown
	}
	if name, ok := strings.CutSuffix(rest, "/-/delete-tag"); ok {
		if err := manifest.ValidateName(name); err != nil {
			return err
		}
		return u.post(w, r, name, func(w http.ResponseWriter, r *http.Request) error { return u.deleteTag(w, r, name) })
	}
	if err := manifest.ValidateName(rest); err != nil {
		return err
	}
	return u.get(w, r, func(w http.ResponseWriter, r *http.Request) error { return u.repositoryPage(w, r, rest) })
}

// routeAPI routes what follows /ui/api/repositories/. A trailing
// /manifests/<digest> is a manifest when the last component has a ':'
// (which no name component can hold).
func (u *UI) routeAPI(w http.ResponseWriter, r *http.Request, rest string) error {
	if i := strings.LastIndex(rest, "/manifests/"); i >= 0 && strings.Contains(rest[i+len("/manifests/"):], ":") {
		name, ds := rest[:i], rest[i+len("/manifests/"):]
		if err := manifest.ValidateName(name); err != nil {
			return err
		}
		d, err := manifest.ParseDigest(ds)
		if err != nil {
			return err
		}
		return u.get(w, r, func(w http.ResponseWriter, r *http.Request) error {
			if !u.may(u.visitor(w, r), name, auth.ActionPull) {
				return fmt.Errorf("%w: %s", ErrNotFound, name)
			}
			img, err := u.src.Image(r.Context(), name, d)
			if err != nil {
				return err
			}
			return writeJSON(w, img)
		})
	}
	if err := manifest.ValidateName(rest); err != nil {
		return err
	}
	return u.get(w, r, func(w http.ResponseWriter, r *http.Request) error {
		if !u.may(u.visitor(w, r), rest, auth.ActionPull) {
			return fmt.Errorf("%w: %s", ErrNotFound, rest)
		}
		page, err := u.src.Repository(r.Context(), rest)
		if err != nil {
			return err
		}
		return writeJSON(w, page)
	})
}

// apiRepositories answers GET /ui/api/repositories.
func (u *UI) apiRepositories(w http.ResponseWriter, r *http.Request) error {
	repos, err := u.visible(w, r)
	if err != nil {
		return err
	}
	return writeJSON(w, repos)
}

// writeJSON writes v as the JSON answer.
func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(append(b, '\n'))
	return err
}

// serveStatic serves an embedded file at <version>/<file>. A file asked for
// under the current version is cached for a year; under another version
// (a page from another build, as during a rolling upgrade across replicas)
// it is served anyway but not cached.
func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request, rest string) error {
	version, file, ok := strings.Cut(rest, "/")
	if !ok || file == "" || !fs.ValidPath(file) {
		return errRouteUnknown
	}
	b, err := fs.ReadFile(u.static, file)
	if err != nil {
		return errRouteUnknown
	}
	switch path.Ext(file) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if version == u.staticVersion {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	return nil
}

// writeError answers with err's status: a JSON object under /ui/api/, an
// error page elsewhere. A 500's cause is logged, never shown.
func (u *UI) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	if status == http.StatusInternalServerError {
		u.log.ErrorContext(r.Context(), "ui: request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	var me methodError
	if errors.As(err, &me) {
		w.Header().Set("Allow", me.allow)
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasPrefix(r.URL.Path, Prefix+"api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(struct {
			Error string `json:"error"`
		}{msg})
		return
	}
	var buf bytes.Buffer
	data := u.base(r, http.StatusText(status))
	if u.access != nil {
		if s, ok := u.readSession(r); ok {
			data.User, data.CSRF = s.User, s.CSRF
		}
	}
	data.Status, data.Message = status, msg
	if terr := u.pages["error"].ExecuteTemplate(&buf, "layout", data); terr != nil {
		u.log.ErrorContext(r.Context(), "ui: error page", slog.Any("error", terr))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

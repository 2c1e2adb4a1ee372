package ui

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/manifest"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/auth"
)

// pageNames are the pages, each templates/<name>.html over templates/layout.html.
var pageNames = []string{"repositories", "repository", "image", "error", "login", "storage"}

// parseTemplates parses every page with the layout and the functions.
func (u *UI) parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"static":    func(file string) string { return Prefix + "static/" + u.staticVersion + "/" + file },
		"bytes":     humanBytes,
		"when":      u.timeElement,
		"unix":      unixOrZero,
		"short":     shortDigest,
		"join":      strings.Join,
		"repoURL":   repoURL,
		"imageURL":  imageURL,
		"artifact":  artifactLabel,
		"mediaType": mediaTypeLabel,
		"argv":      argv,
		"refs":      func(repo string, list []Referrer) referrerList { return referrerList{repo, list} },
		"duration":  func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// pageData is what every page's template gets.
type pageData struct {
	Title string
	// DeleteEnabled shows the delete forms: deleting is on and the visitor
	// may delete in the page's repository.
	DeleteEnabled bool
	// SignIn is set when the UI signs visitors in; User is who is signed
	// in ("" anonymous), CSRF the token every form carries.
	SignIn     bool
	User, CSRF string
	// Storage links the storage page (the Source has one).
	Storage bool
	// Status and Message of the error page.
	Status  int
	Message string
	// Notice is a line shown above the page (after a delete).
	Notice string
	// Page is the page's own data.
	Page any
}

// base is the pageData every page starts from.
func (u *UI) base(r *http.Request, title string) pageData {
	return pageData{Title: title, DeleteEnabled: u.deleteEnabled, SignIn: u.access != nil, Storage: u.storageSource() != nil}
}

// see fills in who the page is for.
func (d *pageData) see(v visitor) { d.User, d.CSRF = v.user, v.csrf }

// visible returns the repositories the visitor may pull.
func (u *UI) visible(w http.ResponseWriter, r *http.Request) ([]Repository, error) {
	repos, err := u.src.Repositories(r.Context())
	if err != nil {
		return nil, err
	}
	v := u.visitor(w, r)
	out := make([]Repository, 0, len(repos))
	for _, repo := range repos {
		if u.may(v, repo.Name, auth.ActionPull) {
			out = append(out, repo)
		}
	}
	return out, nil
}

// renderBuffers hold pages while they render: a 500-tag page is about a
// megabyte, grown afresh for every request without them.
var renderBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes page into a buffer, so a failing template answers a
// clean 500, then writes it.
func (u *UI) render(w http.ResponseWriter, page string, data pageData) error {
	buf := renderBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 8<<20 {
			buf.Reset()
			renderBuffers.Put(buf)
		}
	}()
	if err := u.pages[page].ExecuteTemplate(buf, "layout", data); err != nil {
		return fmt.Errorf("rendering %s: %w", page, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write(buf.Bytes())
	return err
}

// pullHost is the host pull commands name.
func (u *UI) pullHostFor(r *http.Request) string {
	if u.pullHost != "" {
		return u.pullHost
	}
	return r.Host
}

// sortHeader is a sortable column's header: a link that sorts by it
// without JavaScript, and the key app.js sorts by with it.
type sortHeader struct {
	Key, Label string
	URL        string
	// AriaSort is "ascending", "descending" or "" (not sorted by it).
	AriaSort string
	// Numeric columns sort by their cells' data-sort numbers.
	Numeric bool
	// Class is the header cell's: "num" aligns it right, "wide" hides
	// the column on narrow screens.
	Class string
}

// sortHeaders builds the headers of columns, with links that keep query's
// other parameters. A column's first click sorts names ascending and
// numbers descending; a second reverses it.
func sortHeaders(base string, query url.Values, sortKey, order string, cols []sortHeader) []sortHeader {
	out := make([]sortHeader, len(cols))
	for i, c := range cols {
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		next := "asc"
		if c.Numeric {
			next = "desc"
		}
		if c.Key == sortKey {
			c.AriaSort = map[string]string{"asc": "ascending", "desc": "descending"}[order]
			next = map[string]string{"asc": "desc", "desc": "asc"}[order]
		}
		q.Set("sort", c.Key)
		q.Set("order", next)
		c.URL = base + "?" + q.Encode()
		out[i] = c
	}
	return out
}

// sortParams reads ?sort= and ?order=, falling back to the defaults when
// either is not one of the allowed values.
func sortParams(r *http.Request, allowed []sortHeader, defKey, defOrder string) (string, string) {
	key, order := r.URL.Query().Get("sort"), r.URL.Query().Get("order")
	if !slices.ContainsFunc(allowed, func(h sortHeader) bool { return h.Key == key }) {
		key = defKey
	}
	if order != "asc" && order != "desc" {
		order = defOrder
		if key != defKey {
			order = "asc"
			for _, h := range allowed {
				if h.Key == key && h.Numeric {
					order = "desc"
				}
			}
		}
	}
	return key, order
}

// repoGroup is one namespace of the repositories page.
type repoGroup struct {
	Namespace string
	Repos     []Repository
}

// repositoriesView is the repositories page's data.
type repositoriesView struct {
	Query   string
	Total   int
	Shown   int
	Headers []sortHeader
	Groups  []repoGroup
}

var repositoryColumns = []sortHeader{
	{Key: "name", Label: "Name"},
	{Key: "tags", Label: "Tags", Numeric: true, Class: "num"},
	{Key: "size", Label: "Size", Numeric: true, Class: "num"},
	{Key: "pushed", Label: "Last push", Numeric: true},
}

// repositoriesPage answers GET /ui/.
func (u *UI) repositoriesPage(w http.ResponseWriter, r *http.Request) error {
	repos, err := u.visible(w, r)
	if err != nil {
		return err
	}
	key, order := sortParams(r, repositoryColumns, "name", "asc")
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	view := repositoriesView{Query: q, Total: len(repos)}
	shown := make([]Repository, 0, len(repos))
	for _, repo := range repos {
		if q == "" || strings.Contains(repo.Name, strings.ToLower(q)) {
			shown = append(shown, repo)
		}
	}
	view.Shown = len(shown)
	slices.SortStableFunc(shown, func(a, b Repository) int {
		c := 0
		switch key {
		case "tags":
			c = cmp.Compare(a.Tags, b.Tags)
		case "size":
			c = cmp.Compare(a.Bytes, b.Bytes)
		case "pushed":
			c = a.LastPush.Compare(b.LastPush)
		}
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if order == "desc" {
			c = -c
		}
		return c
	})
	byNS := map[string]int{}
	for _, repo := range shown {
		ns := namespace(repo.Name)
		i, ok := byNS[ns]
		if !ok {
			i = len(view.Groups)
			byNS[ns] = i
			view.Groups = append(view.Groups, repoGroup{Namespace: ns})
		}
		view.Groups[i].Repos = append(view.Groups[i].Repos, repo)
	}
	slices.SortFunc(view.Groups, func(a, b repoGroup) int { return strings.Compare(a.Namespace, b.Namespace) })
	query := url.Values{}
	if q != "" {
		query.Set("q", q)
	}
	view.Headers = sortHeaders(Prefix, query, key, order, repositoryColumns)
	data := u.base(r, "Repositories")
	data.see(u.visitor(w, r))
	data.Page = view
	return u.render(w, "repositories", data)
}

// namespace is a name's first path component, "" for a one-component name.
func namespace(name string) string {
	ns, _, ok := strings.Cut(name, "/")
	if !ok {
		return ""
	}
	return ns
}

// tagRow is one row of the repository page, its strings made once here
// rather than by template functions (a page may have thousands of rows).
type tagRow struct {
	Tag
	// SameManifest lists every tag on the row's manifest (itself included),
	// which deleting the manifest deletes, joined with ", ".
	SameManifest string
	// URL of the manifest's page, Short its digest.
	URL, Short string
	// PullTag and PullDigest are the pull commands.
	PullTag, PullDigest string
}

// repositoryView is the repository page's data.
type repositoryView struct {
	Repository
	PullHost string
	Headers  []sortHeader
	Tags     []tagRow
}

var tagColumns = []sortHeader{
	{Key: "name", Label: "Tag"},
	{Key: "size", Label: "Size", Numeric: true, Class: "num"},
	{Key: "created", Label: "Created", Numeric: true, Class: "wide"},
	{Key: "pushed", Label: "Pushed", Numeric: true},
}

// repositoryPage answers GET /ui/r/<name>.
func (u *UI) repositoryPage(w http.ResponseWriter, r *http.Request, name string) error {
	v := u.visitor(w, r)
	if !u.may(v, name, auth.ActionPull) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	page, err := u.src.Repository(r.Context(), name)
	if err != nil {
		return err
	}
	key, order := sortParams(r, tagColumns, "pushed", "desc")
	byDigest := map[digest.Digest][]string{}
	for _, t := range page.TagList {
		byDigest[t.Digest] = append(byDigest[t.Digest], t.Name)
	}
	host := u.pullHostFor(r)
	joined := make(map[digest.Digest]string, len(byDigest))
	for d, tags := range byDigest {
		slices.Sort(tags)
		joined[d] = strings.Join(tags, ", ")
	}
	rows := make([]tagRow, len(page.TagList))
	for i, t := range page.TagList {
		rows[i] = tagRow{
			Tag: t, SameManifest: joined[t.Digest],
			URL: imageURL(name, t.Digest), Short: shortDigest(t.Digest),
			PullTag:    "docker pull " + host + "/" + name + ":" + t.Name,
			PullDigest: "docker pull " + host + "/" + name + "@" + t.Digest.String(),
		}
	}
	slices.SortStableFunc(rows, func(a, b tagRow) int {
		c := 0
		switch key {
		case "size":
			c = cmp.Compare(a.Bytes, b.Bytes)
		case "created":
			c = a.Created.Compare(b.Created)
		case "pushed":
			c = a.Pushed.Compare(b.Pushed)
		}
		if c == 0 {
			c = strings.Compare(a.Name, b.Name)
		}
		if order == "desc" {
			c = -c
		}
		return c
	})
	view := repositoryView{
		Repository: page.Repository,
		PullHost:   host,
		Headers:    sortHeaders(repoURL(name), nil, key, order, tagColumns),
		Tags:       rows,
	}
	data := u.base(r, name)
	data.see(v)
	data.DeleteEnabled = data.DeleteEnabled && u.may(v, name, auth.ActionDelete)
	data.Notice = deletedNotice(r)
	data.Page = view
	return u.render(w, "repository", data)
}

// imageView is the image page's data.
type imageView struct {
	Image
	PullHost string
	// Labels of the config, by key.
	Labels []keyValue
}

// keyValue is one label, in key order.
type keyValue struct{ Key, Value string }

// imagePage answers GET /ui/r/<name>/@<digest>.
func (u *UI) imagePage(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) error {
	v := u.visitor(w, r)
	if !u.may(v, name, auth.ActionPull) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	img, err := u.src.Image(r.Context(), name, d)
	if err != nil {
		return err
	}
	if img.Repository == "" {
		img.Repository = name
	}
	if img.Digest == "" {
		img.Digest = d
	}
	view := imageView{Image: img, PullHost: u.pullHostFor(r)}
	if img.Config != nil {
		for k, v := range img.Config.Labels {
			view.Labels = append(view.Labels, keyValue{k, v})
		}
		slices.SortFunc(view.Labels, func(a, b keyValue) int { return strings.Compare(a.Key, b.Key) })
	}
	data := u.base(r, name+"@"+shortDigest(d))
	data.see(v)
	data.DeleteEnabled = data.DeleteEnabled && u.may(v, name, auth.ActionDelete)
	data.Page = view
	return u.render(w, "image", data)
}

// deleteTag answers POST /ui/r/<name>/-/delete-tag.
func (u *UI) deleteTag(w http.ResponseWriter, r *http.Request, name string) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("%w: the form does not parse", errBadRequest)
	}
	tag := r.PostForm.Get("tag")
	if err := manifest.ValidateTag(tag); err != nil {
		return err
	}
	if err := u.src.DeleteTag(r.Context(), name, tag); err != nil {
		return err
	}
	u.log.InfoContext(r.Context(), "ui: tag deleted", slog.String("repository", name), slog.String("tag", tag))
	return u.redirectAfterDelete(w, r, name, "tag "+tag)
}

// deleteManifest answers POST /ui/r/<name>/@<digest>/delete.
func (u *UI) deleteManifest(w http.ResponseWriter, r *http.Request, name string, d digest.Digest) error {
	tags, err := u.src.DeleteManifest(r.Context(), name, d)
	if err != nil {
		return err
	}
	u.log.InfoContext(r.Context(), "ui: manifest deleted", slog.String("repository", name),
		slog.String("digest", d.String()), slog.Any("tags", tags))
	what := "manifest " + shortDigest(d)
	if len(tags) > 0 {
		what += " and its tags " + strings.Join(tags, ", ")
	}
	return u.redirectAfterDelete(w, r, name, what)
}

// redirectAfterDelete sends the browser back to the repository page with
// a notice of what was deleted, or to the repositories page if the
// repository has no tags left.
func (u *UI) redirectAfterDelete(w http.ResponseWriter, r *http.Request, name, what string) error {
	target := repoURL(name) + "?" + url.Values{"deleted": {what}}.Encode()
	if _, err := u.src.Repository(r.Context(), name); errors.Is(err, ErrNotFound) {
		target = Prefix + "?" + url.Values{"deleted": {name + ": " + what}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// deletedNotice is the notice after a delete's redirect. It only echoes
// the query (escaped by the template), bounded in length.
func deletedNotice(r *http.Request) string {
	s := r.URL.Query().Get("deleted")
	if s == "" {
		return ""
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return "Deleted " + s + "."
}

// referrerList is one level of the referrers tree, with the repository
// its links point into.
type referrerList struct {
	Repository string
	List       []Referrer
}

// argv shows an Entrypoint or Cmd the way a Dockerfile's exec form writes it.
func argv(args []string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the template escapes; "&&" stays readable
	if err := enc.Encode(args); err != nil {
		return strings.Join(args, " ")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// repoURL is the repository page of name.
func repoURL(name string) string { return Prefix + "r/" + name }

// imageURL is the image page of manifest d in repository name.
func imageURL(name string, d digest.Digest) string { return Prefix + "r/" + name + "/@" + d.String() }

// shortDigest is the algorithm and the first 12 hex characters.
func shortDigest(d digest.Digest) string {
	s := d.String()
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || len(hex) <= 12 {
		return s
	}
	return alg + ":" + hex[:12]
}

// humanBytes is n in decimal units, as docker shows sizes.
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	f := float64(n) / 1000
	i := 0
	for f >= 999.95 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.2f %s", f, units[i])
	}
	if f < 100 {
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.0f %s", f, units[i])
}

// relativeTime is how long ago t was, in the largest whole unit.
func (u *UI) relativeTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := u.now().Sub(t)
	if d < 0 {
		return "in the future"
	}
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 60*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d < 730*24*time.Hour:
		return plural(int(d/(30*24*time.Hour)), "month")
	}
	return plural(int(d/(365*24*time.Hour)), "year")
}

// timeElement is t as a <time> element: how long ago as its text, the
// UTC time to the second as its title. Built here, not in a template, as
// pages show thousands; every part is formatted from t, nothing is a
// caller's text.
func (u *UI) timeElement(t time.Time) template.HTML {
	if t.IsZero() {
		return `<span class="muted">—</span>`
	}
	return template.HTML(`<time datetime="` + t.UTC().Format(time.RFC3339) + `" title="` + absoluteTime(t) + `">` +
		u.relativeTime(t) + `</time>`)
}

// absoluteTime is t in UTC to the second, "" for the zero time.
func absoluteTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// unixOrZero is t in Unix seconds, 0 for the zero time: a sort key.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// artifactLabel names an artifact type the way people say it, or returns
// it unchanged.
func artifactLabel(t string) string {
	l := strings.ToLower(t)
	switch {
	case t == "":
		return "manifest"
	case strings.Contains(l, "cosign") && strings.Contains(l, "sig"),
		strings.Contains(l, "notary") && strings.Contains(l, "signature"),
		strings.Contains(l, "signature"):
		return "signature"
	case strings.Contains(l, "spdx"), strings.Contains(l, "cyclonedx"), strings.Contains(l, "sbom"), strings.Contains(l, "syft"):
		return "SBOM"
	case strings.Contains(l, "in-toto"), strings.Contains(l, "intoto"), strings.Contains(l, "dsse"), strings.Contains(l, "attestation"):
		return "attestation"
	}
	return t
}

// mediaTypeLabel shortens the common manifest and layer media types.
func mediaTypeLabel(mt string) string {
	switch mt {
	case "application/vnd.oci.image.index.v1+json":
		return "OCI index"
	case "application/vnd.oci.image.manifest.v1+json":
		return "OCI image"
	case "application/vnd.docker.distribution.manifest.list.v2+json":
		return "Docker manifest list"
	case "application/vnd.docker.distribution.manifest.v2+json":
		return "Docker image"
	case "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip":
		return "tar+gzip"
	case "application/vnd.oci.image.layer.v1.tar+zstd":
		return "tar+zstd"
	case "application/vnd.oci.image.layer.v1.tar":
		return "tar"
	}
	return mt
}

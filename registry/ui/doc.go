// Package ui is Berth's web UI: server-rendered pages to browse, inspect and
// clean up what the registry holds, and the same data as JSON for scripts,
// all under /ui/ (see UI.ServeHTTP for the URL scheme).
//
// The pages are html/template files and the CSS, JavaScript and icon are
// static files, both embedded with go:embed; the JavaScript only enhances
// (sorting and filtering in place, copy buttons, delete confirmations), so
// every page works without it. Every response carries a strict
// Content-Security-Policy (no inline script or style, nothing from another
// origin), nosniff and a same-origin Referrer-Policy. Delete forms are POSTs
// accepted only from the registry's own pages (Origin or Referer naming the
// request's host) and only when deleting is enabled.
//
// The data comes from a Source (model.go), one call per page. The HTTP side
// (handler.go, pages.go) may import the standard library, manifest (name and
// digest validation) and go-digest; it does not read the store itself, which
// only the storage-backed Source does.
package ui

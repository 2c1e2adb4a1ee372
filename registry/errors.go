package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/manifest"
	"github.com/berth-registry/berth/registry/proxy"
	"github.com/berth-registry/berth/storage"
	"github.com/berth-registry/berth/storage/store"
)

// Errors of the HTTP layer itself, wrapped with %w like the store's. The
// authorizer returns *auth.Challenge, which matches auth.ErrUnauthorized (401)
// or auth.ErrDenied (403).
var (
	// errUnsupported: the operation is switched off or the method is not
	// served on this path (UNSUPPORTED, 405).
	errUnsupported = errors.New("the operation is unsupported")
	// errUploadInvalid: an upload request is malformed (BLOB_UPLOAD_INVALID).
	errUploadInvalid = errors.New("blob upload invalid")
	// errSizeInvalid: the request body does not have the size it declared (SIZE_INVALID).
	errSizeInvalid = errors.New("provided length did not match content length")
	// errPaginationNumberInvalid: the n query parameter is not a non-negative number.
	errPaginationNumberInvalid = errors.New("invalid number of results requested")
	// errRangeNotSatisfiable: a blob GET asked for bytes the blob does not have (RANGE_INVALID, 416).
	errRangeNotSatisfiable = errors.New("requested range not satisfiable")
	// errRouteUnknown: the path matches no route (NOT_FOUND, 404).
	errRouteUnknown = errors.New("no route matches the request path")
	// errTooManyTags: a manifest PUT names more than MaxPushTags tags (414).
	errTooManyTags = errors.New("too many tags")
	// errNotReady: the storage does not answer (UNAVAILABLE, 503); the cause is logged.
	errNotReady = errors.New("storage is not reachable")
)

// errorClass is what a family of errors becomes on the wire.
type errorClass struct {
	err    error // matched with errors.Is
	code   string
	status int
	// message replaces the error's own text when set: for errors whose
	// text could carry internals, or that need to name a limit.
	message string
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

// errorTable maps every error the handlers can return to its OCI code and
// HTTP status; the first match wins, so more specific errors come first.
// Anything not listed is a 500 UNKNOWN whose text is logged, not sent.
var errorTable = []errorClass{
	{err: store.ErrBlobUnknown, code: "BLOB_UNKNOWN", status: http.StatusNotFound},
	{err: errUploadInvalid, code: "BLOB_UPLOAD_INVALID", status: http.StatusBadRequest},
	{err: store.ErrUploadUnknown, code: "BLOB_UPLOAD_UNKNOWN", status: http.StatusNotFound},
	{err: manifest.ErrDigestInvalid, code: "DIGEST_INVALID", status: http.StatusBadRequest},
	{err: store.ErrDigestMismatch, code: "DIGEST_INVALID", status: http.StatusBadRequest},
	{err: store.ErrManifestBlobUnknown, code: "MANIFEST_BLOB_UNKNOWN", status: http.StatusBadRequest},
	{err: manifest.ErrTooLarge, code: "MANIFEST_INVALID", status: http.StatusRequestEntityTooLarge,
		message: fmt.Sprintf("manifest too large: the limit is %d bytes (%d MiB)", manifest.MaxSize, manifest.MaxSize>>20)},
	{err: manifest.ErrInvalid, code: "MANIFEST_INVALID", status: http.StatusBadRequest},
	{err: manifest.ErrUnsupported, code: "MANIFEST_INVALID", status: http.StatusBadRequest},
	{err: manifest.ErrTagInvalid, code: "MANIFEST_INVALID", status: http.StatusBadRequest},
	{err: errTooManyTags, code: "MANIFEST_INVALID", status: http.StatusRequestURITooLong},
	{err: store.ErrManifestUnknown, code: "MANIFEST_UNKNOWN", status: http.StatusNotFound},
	{err: manifest.ErrNameInvalid, code: "NAME_INVALID", status: http.StatusBadRequest},
	{err: store.ErrNameUnknown, code: "NAME_UNKNOWN", status: http.StatusNotFound},
	{err: errBodyStalled, code: "BLOB_UPLOAD_INVALID", status: http.StatusRequestTimeout},
	{err: errSizeInvalid, code: "SIZE_INVALID", status: http.StatusBadRequest},
	{err: store.ErrRangeInvalid, code: "RANGE_INVALID", status: http.StatusRequestedRangeNotSatisfiable},
	{err: errRangeNotSatisfiable, code: "RANGE_INVALID", status: http.StatusRequestedRangeNotSatisfiable},
	{err: errPaginationNumberInvalid, code: "PAGINATION_NUMBER_INVALID", status: http.StatusBadRequest},
	{err: errUnsupported, code: "UNSUPPORTED", status: http.StatusMethodNotAllowed},
	{err: errTooManyUploads, code: "TOOMANYREQUESTS", status: http.StatusTooManyRequests, retryAfter: uploadRetryAfter},
	{err: auth.ErrTooManyRequests, code: "TOOMANYREQUESTS", status: http.StatusTooManyRequests, message: "too many failed logins: retry later"},
	// Fixed messages: a challenge's cause says why a token was refused, which is for the log.
	// A known user lacking the access: still 401 with the Bearer challenge,
	// so that the client asks for a token with it, but DENIED, since
	// logging in again cannot help; the challenge's Message says who was
	// refused what.
	{err: auth.ErrInsufficientScope, code: "DENIED", status: http.StatusUnauthorized},
	{err: auth.ErrUnauthorized, code: "UNAUTHORIZED", status: http.StatusUnauthorized, message: "authentication required"},
	{err: auth.ErrDenied, code: "DENIED", status: http.StatusForbidden, message: "requested access to the resource is denied"},
	{err: errRouteUnknown, code: "NOT_FOUND", status: http.StatusNotFound},
	// The pull-through cache: the upstream's trouble is never a 404.
	{err: proxy.ErrPushDenied, code: "DENIED", status: http.StatusForbidden},
	{err: proxy.ErrNotMirrored, code: "DENIED", status: http.StatusForbidden},
	{err: proxy.ErrUpstreamDenied, code: "DENIED", status: http.StatusForbidden},
	{err: proxy.ErrUpstreamThrottled, code: "TOOMANYREQUESTS", status: http.StatusServiceUnavailable},
	{err: proxy.ErrUpstreamUnavailable, code: "UNAVAILABLE", status: http.StatusBadGateway},
	// Out of file descriptors (ulimit -n): a passing condition, for the
	// client to retry, not a fault of the server (http.maxConnections
	// keeps it away).
	{err: syscall.EMFILE, code: "UNAVAILABLE", status: http.StatusServiceUnavailable, message: outOfFiles, retryAfter: 1},
	{err: syscall.ENFILE, code: "UNAVAILABLE", status: http.StatusServiceUnavailable, message: outOfFiles, retryAfter: 1},
	{err: store.ErrStoredBlobCollected, code: "UNAVAILABLE", status: http.StatusServiceUnavailable, retryAfter: 1},
	{err: errNotReady, code: "UNAVAILABLE", status: http.StatusServiceUnavailable, message: errNotReady.Error()},
}

const outOfFiles = "the registry has too many files open: retry shortly"

var internalError = errorClass{code: "UNKNOWN", status: http.StatusInternalServerError, message: "internal server error"}

// classify finds the table entry for err; storage.IsFull errors are
// fullClass.
func classify(err error) errorClass {
	if storage.IsFull(err) {
		return fullClass
	}
	for _, c := range errorTable {
		if errors.Is(err, c.err) {
			return c
		}
	}
	return internalError
}

// withoutCodeText drops from msg a leading repeat of what its code already
// says. Clients print the code's text before the message (docker:
// "manifest unknown: <message>", crane: "MANIFEST_UNKNOWN: <message>"), and
// an error wrapping the class's sentinel starts with the sentinel's text,
// which says the same: "manifest unknown: manifest unknown: tag ..." becomes
// "manifest unknown: tag ...". A message that is nothing but the sentinel's
// text is kept.
func withoutCodeText(msg string, c errorClass) string {
	if c.err == nil {
		return msg
	}
	if rest, ok := strings.CutPrefix(msg, c.err.Error()+": "); ok && rest != "" {
		return rest
	}
	return msg
}

// maxMessage bounds the message sent to the client; the validators already
// shorten hostile values, this is defence in depth.
const maxMessage = 1024

type errorEnvelope struct {
	Errors []errorBody `json:"errors"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError is the one place that turns a handler's error into a response:
// the OCI envelope with the status and code of the table, and for an
// *auth.Challenge its WWW-Authenticate header. Headers the handler
// set (Range and Location of a 416 upload answer) are kept; those describing
// a body that was never sent are dropped.
func (reg *Registry) writeError(w http.ResponseWriter, r *http.Request, err error) {
	c := classify(err)
	msg := c.message
	ch, isChallenge := errors.AsType[*auth.Challenge](err)
	if isChallenge {
		msg = ch.Message()
	}
	if msg == "" {
		msg = withoutCodeText(err.Error(), c)
		if len(msg) > maxMessage {
			msg = msg[:maxMessage] + "..."
		}
	}
	switch {
	case c.status == http.StatusInsufficientStorage:
		reg.refusedForSpace(r, err)
	case errors.Is(err, errBodyTruncated) || errors.Is(err, errBodyStalled) ||
		(c.status == http.StatusInternalServerError && errors.Is(err, context.Canceled) && r.Context().Err() != nil):
		reg.log.LogAttrs(r.Context(), slog.LevelInfo, "client went away", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Any("error", err))
	case c.status >= 500:
		reg.log.LogAttrs(r.Context(), slog.LevelError, "request failed", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", c.status), slog.Any("error", err))
	case isChallenge && errors.Is(err, auth.ErrInsufficientScope):
		// A known user turned away: worth an operator's attention (a
		// missing policy rule, or someone probing), unlike the 401 that
		// starts every token flow.
		refused := make([]string, 0, len(ch.Refused))
		for _, a := range ch.Refused {
			refused = append(refused, a.String())
		}
		reg.log.LogAttrs(r.Context(), slog.LevelWarn, "access denied", slog.String("subject", ch.Subject),
			slog.String("refused", strings.Join(refused, " ")), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.String("client", reg.client(r)))
	default:
		reg.log.LogAttrs(r.Context(), slog.LevelDebug, "request refused", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.String("code", c.code), slog.Any("error", err))
	}
	body, jerr := json.Marshal(errorEnvelope{Errors: []errorBody{{Code: c.code, Message: msg}}})
	if jerr != nil { // cannot happen: strings only
		body = []byte(`{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}`)
	}
	h := w.Header()
	for _, k := range []string{"Docker-Content-Digest", "Etag", "Accept-Ranges", "Content-Range", "Content-Encoding", "Cache-Control"} {
		if c.status != http.StatusRequestedRangeNotSatisfiable || k != "Content-Range" {
			delete(h, k)
		}
	}
	if isChallenge {
		h.Set("WWW-Authenticate", ch.Header())
	}
	if c.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(c.retryAfter))
	}
	if te, ok := errors.AsType[*auth.ThrottledError](err); ok {
		h.Set("Retry-After", strconv.Itoa(te.Seconds()))
	}
	if te, ok := errors.AsType[*proxy.ThrottledError](err); ok && te.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds())))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(c.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

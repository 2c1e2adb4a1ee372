package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-registry/berth/auth"
)

// Access decides who may sign in to the UI and what each visitor may see
// and do; *issuer.Issuer (the built-in token issuer) is one. Without an
// Access (Options.Access nil) there is no sign-in and everyone may do
// everything, as on the registry's API without auth.
type Access interface {
	// SignIn checks user's password (throttled as the token endpoint's
	// logins are) and returns the fingerprint of the user's credentials.
	SignIn(r *http.Request, user, password string) (fingerprint string, err error)
	// Fingerprint returns the fingerprint of user's credentials now; false
	// if the user is gone. A session whose fingerprint differs has ended.
	Fingerprint(user string) (string, bool)
	// Grant returns the part of want that subject ("" for anonymous)
	// may perform.
	Grant(subject string, want auth.Access) auth.Access
}

// Errors of signing in.
var (
	// errCSRF: a form without the session's CSRF token (403).
	errCSRF = errors.New("the form's security token is missing or stale: reload the page and try again")
	// errForbidden: the visitor may not do what the form asks (403).
	errForbidden = errors.New("you may not do that here")
	// errSignIn: a wrong user name or password (401).
	errSignIn = errors.New("wrong user name or password")
)

// sessionCookie holds a visitor's session: who signed in (nobody for an
// anonymous visitor), the fingerprint of their credentials, the CSRF token
// of their forms and when the session ends, signed with the UI's key.
const (
	sessionCookie = "berth_session"
	sessionTTL    = 12 * time.Hour
	maxCookie     = 4096
)

// session is the content of the session cookie.
type session struct {
	User string `json:"u,omitempty"`
	FP   string `json:"f,omitempty"`
	CSRF string `json:"c"`
	Exp  int64  `json:"e"`
}

// visitor is who a request comes from, as far as the pages care.
type visitor struct {
	user string // "" anonymous
	csrf string // the CSRF token of the visitor's forms; "" without Access
	all  bool   // no Access: everything is allowed
}

// sign returns the cookie value of s.
func (u *UI) sign(s session) string {
	b, _ := json.Marshal(s) // strings and a number: cannot fail
	payload := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, u.sessionKey)
	m.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// readSession returns the request's session if its cookie is present,
// signed with the UI's key, unexpired and (for a user) still bound to the
// user's current credentials.
func (u *UI) readSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) > maxCookie {
		return session{}, false
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return session{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return session{}, false
	}
	m := hmac.New(sha256.New, u.sessionKey)
	m.Write([]byte(payload))
	if !hmac.Equal(got, m.Sum(nil)) {
		return session{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return session{}, false
	}
	var s session
	if json.Unmarshal(b, &s) != nil || s.CSRF == "" || u.now().Unix() > s.Exp {
		return session{}, false
	}
	if s.User != "" {
		if fp, ok := u.access.Fingerprint(s.User); !ok || fp != s.FP {
			return session{}, false // signed out by a password change or removal
		}
	}
	return s, true
}

// setSession sets the session cookie: HttpOnly, SameSite=Strict, Secure
// under TLS, for the UI's paths only.
func (u *UI) setSession(w http.ResponseWriter, r *http.Request, s session) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: u.sign(s), Path: Prefix, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, Expires: time.Unix(s.Exp, 0)})
}

// newSession returns a session for user (fingerprint fp) with a fresh
// CSRF token.
func (u *UI) newSession(user, fp string) session {
	return session{User: user, FP: fp, CSRF: rand.Text(), Exp: u.now().Add(sessionTTL).Unix()}
}

// visitor returns who r comes from. With an Access, a request without a
// valid session gets an anonymous one (set on w), so that its forms carry
// a CSRF token.
func (u *UI) visitor(w http.ResponseWriter, r *http.Request) visitor {
	if u.access == nil {
		return visitor{all: true}
	}
	s, ok := u.readSession(r)
	if !ok {
		s = u.newSession("", "")
		u.setSession(w, r, s)
	}
	return visitor{user: s.User, csrf: s.CSRF}
}

// may reports whether v may perform action (auth.ActionPull,
// auth.ActionDelete) on repository repo.
func (u *UI) may(v visitor, repo, action string) bool {
	if v.all {
		return true
	}
	g := u.access.Grant(v.user, auth.Access{Type: auth.TypeRepository, Name: repo, Actions: []string{action}})
	return len(g.Actions) == 1 && g.Actions[0] == action
}

// checkCSRF checks a form's CSRF token against the visitor's session.
func (u *UI) checkCSRF(r *http.Request, v visitor) error {
	if v.all {
		return nil
	}
	got := r.PostFormValue("csrf")
	if v.csrf == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
		return errCSRF
	}
	return nil
}

// form checks a POSTed form: sent from the UI's own origin, small, and
// (with an Access) carrying the visitor's CSRF token. It returns the
// visitor.
func (u *UI) form(w http.ResponseWriter, r *http.Request) (visitor, error) {
	if !sameOrigin(r) {
		return visitor{}, errCrossOrigin
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8192)
	if err := r.ParseForm(); err != nil {
		return visitor{}, fmt.Errorf("%w: the form does not parse", errBadRequest)
	}
	v := u.visitor(w, r)
	return v, u.checkCSRF(r, v)
}

// loginView is the sign-in page's data.
type loginView struct {
	User, Next, Error string
}

// loginPage answers GET /ui/login.
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) error {
	if u.access == nil {
		return errRouteUnknown
	}
	v := u.visitor(w, r)
	data := u.base(r, "Sign in")
	data.see(v)
	data.Page = loginView{Next: localNext(r.URL.Query().Get("next"))}
	return u.render(w, "login", data)
}

// login answers POST /ui/login: a same-origin form with the visitor's CSRF
// token, the user name and the password. On success the session is
// replaced by the user's (with a new CSRF token) and the browser goes to
// next; otherwise the form is shown again with 401 (or 429 when throttled).
func (u *UI) login(w http.ResponseWriter, r *http.Request) error {
	if u.access == nil {
		return errRouteUnknown
	}
	v, err := u.form(w, r)
	if err != nil {
		return err
	}
	user, next := r.PostFormValue("user"), localNext(r.PostFormValue("next"))
	fp, err := u.access.SignIn(r, user, r.PostFormValue("password"))
	if err != nil {
		status, msg := http.StatusUnauthorized, errSignIn.Error()
		var te *auth.ThrottledError
		if errors.As(err, &te) {
			status, msg = http.StatusTooManyRequests, "Too many failed sign-ins: try again later."
			w.Header().Set("Retry-After", fmt.Sprint(te.Seconds()))
		}
		data := u.base(r, "Sign in")
		data.see(v)
		data.Page = loginView{User: user, Next: next, Error: msg}
		w.WriteHeader(status)
		return u.render(w, "login", data)
	}
	u.setSession(w, r, u.newSession(user, fp))
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// logout answers POST /ui/logout: the session becomes an anonymous one.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) error {
	if u.access == nil {
		return errRouteUnknown
	}
	if _, err := u.form(w, r); err != nil {
		return err
	}
	u.setSession(w, r, u.newSession("", ""))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
	return nil
}

// localNext returns next if it is a path of the UI, else the UI's start:
// a sign-in never sends the browser elsewhere.
func localNext(next string) string {
	p, err := url.Parse(next)
	if err != nil || next == "" || p.Scheme != "" || p.Host != "" || p.User != nil ||
		!strings.HasPrefix(p.Path, Prefix) || strings.Contains(next, "\\") || strings.HasPrefix(next, "//") {
		return Prefix
	}
	return next
}

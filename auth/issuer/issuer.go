package issuer

import (
	"crypto"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/manifest"
)

// Defaults and bounds of Config.
const (
	DefaultTTL        = 5 * time.Minute
	MinTTL            = 60 * time.Second
	DefaultRefreshTTL = 30 * 24 * time.Hour

	// maxScopes bounds the scopes of one request; maxForm the size of a POST body.
	maxScopes = 64
	maxForm   = 64 << 10
	// refreshTyp is the "typ" header and "token_use" claim of refresh tokens; access tokens carry "JWT".
	refreshTyp = "refresh+jwt"
	leeway     = 60 * time.Second
)

// Config configures an Issuer.
type Config struct {
	Issuer  string        // required: the "iss" of every token
	Service string        // required: the service tokens are for ("aud"); requests naming another get 400
	Key     crypto.Signer // required: ECDSA P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA)
	// Users returns the current users, asked once per request (cmd/berth reloads the
	// htpasswd file when it changes). nil, or a nil result: nobody can log in, only
	// anonymous tokens are issued.
	Users func() *auth.Htpasswd
	// Policy returns the current policy, asked once per request; required.
	Policy     func() *auth.Policy
	TTL        time.Duration    // access token lifetime; 0: DefaultTTL; at least MinTTL
	RefreshTTL time.Duration    // refresh token lifetime; 0: DefaultRefreshTTL; at least TTL
	Now        func() time.Time // nil: time.Now
	// Throttle counts failed logins (a wrong password or refresh token) and refuses,
	// with 429 and Retry-After, passwords from a user or client address that failed too
	// often, before checking them; nil: no throttling and no count.
	Throttle *auth.Throttle
	// Proxies say whose X-Forwarded-For gives the client address; nil: the TCP peer.
	Proxies *auth.TrustedProxies
	Log     *slog.Logger // optional: refused logins at debug level (user and address, never secrets); nil: discarded
}

// Issuer serves the token endpoint. It is an http.Handler for /auth/token and is safe for
// concurrent use.
type Issuer struct {
	cfg     Config
	signer  *signer
	jwks    []byte
	refresh *jwt.Parser
}

// New checks cfg, applies its defaults and returns an Issuer.
func New(cfg Config) (*Issuer, error) {
	if cfg.Issuer == "" || cfg.Service == "" {
		return nil, errors.New("issuer: Issuer and Service are required")
	}
	if cfg.Policy == nil {
		return nil, errors.New("issuer: Policy is required")
	}
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	case cfg.TTL < MinTTL:
		return nil, fmt.Errorf("issuer: TTL %v is below the minimum %v", cfg.TTL, MinTTL)
	}
	switch {
	case cfg.RefreshTTL == 0:
		cfg.RefreshTTL = DefaultRefreshTTL
	case cfg.RefreshTTL < cfg.TTL:
		return nil, fmt.Errorf("issuer: RefreshTTL %v is below TTL %v", cfg.RefreshTTL, cfg.TTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s, err := newSigner(cfg.Key)
	if err != nil {
		return nil, err
	}
	jwks, err := auth.MarshalJWKS(s.public())
	if err != nil {
		return nil, err
	}
	return &Issuer{
		cfg:    cfg,
		signer: s,
		jwks:   jwks,
		refresh: jwt.NewParser(
			jwt.WithValidMethods([]string{s.alg}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(refreshAudience(cfg.Service)),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

// refreshAudience is the audience of refresh tokens: never the service itself, so a
// verifier for the service refuses a refresh token presented as an access token.
func refreshAudience(service string) string { return service + "#refresh" }

// refreshClaims are the claims of a refresh token: no access list, its own audience, a
// token_use marker, and the fingerprint of the subject's htpasswd entry when it was
// issued (auth.Htpasswd.Fingerprint), so that removing the user or changing the
// password ends the token.
type refreshClaims struct {
	jwt.RegisteredClaims
	TokenUse   string `json:"token_use"`
	Credential string `json:"cred"`
}

// tokenError is a failed token request; writeError renders it in the style of the flow.
type tokenError struct {
	status     int
	code       string // OAuth2 error code (RFC 6749 5.2)
	desc       string // safe to show: never contains a password or token
	retryAfter int    // seconds, for a 429
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func badRequest(code, format string, args ...any) error {
	return &tokenError{status: http.StatusBadRequest, code: code, desc: fmt.Sprintf(format, args...)}
}

var errBadCredentials = &tokenError{status: http.StatusUnauthorized, code: "invalid_grant", desc: "invalid credentials"}

// throttled is the answer to a login that the throttle refused: 429 with Retry-After.
// The OAuth2 code is temporarily_unavailable; the GET flow's Docker-style body says
// TOOMANYREQUESTS, as the registry does.
func throttled(err error) error {
	te, ok := errors.AsType[*auth.ThrottledError](err)
	if !ok {
		return err
	}
	return &tokenError{status: http.StatusTooManyRequests, code: "temporarily_unavailable",
		desc: fmt.Sprintf("too many failed logins: retry in %d seconds", te.Seconds()), retryAfter: te.Seconds()}
}

// grant is what a successful request yields.
type grant struct {
	subject string
	cred    string // the subject's htpasswd fingerprint, for a refresh token
	access  []auth.Access
	offline bool
}

// ServeHTTP serves the Docker token endpoint: GET (Docker token authentication) and
// POST (OAuth2 password and refresh_token grants).
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	var err error
	switch r.Method {
	case http.MethodGet:
		err = i.serveGet(w, r)
	case http.MethodPost:
		err = i.servePost(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		err = &tokenError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "method not allowed"}
	}
	if err != nil {
		i.writeError(w, r, err)
	}
}

func (i *Issuer) serveGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := i.checkService(q.Get("service"), false); err != nil {
		return err
	}
	var scopes []string
	for _, s := range q["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	access, err := parseScopes(scopes)
	if err != nil {
		return err
	}
	users := i.users()
	g := grant{access: access}
	user, password, hasBasic := r.BasicAuth()
	if !hasBasic && r.Header.Get("Authorization") != "" {
		return i.failed(r, "", false, "unsupported Authorization scheme")
	}
	if hasBasic {
		client := i.cfg.Proxies.ClientAddr(r)
		if err := i.cfg.Throttle.Check(user, client); err != nil {
			return throttled(err)
		}
		if !checkPassword(users, user, password) {
			return i.failed(r, user, true, "bad password or unknown user")
		}
		i.cfg.Throttle.Succeeded(user, client)
		g.subject = user
		g.cred, _ = users.Fingerprint(user)
	}
	if account := q.Get("account"); account != "" && account != g.subject {
		return badRequest("invalid_request", "account does not match the credentials")
	}
	g.offline = q.Get("offline_token") == "true" && g.subject != ""
	resp, err := i.issue(g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token":         resp.AccessToken,
		"access_token":  resp.AccessToken,
		"expires_in":    resp.ExpiresIn,
		"issued_at":     resp.IssuedAt,
		"refresh_token": resp.RefreshToken, // omitted below when empty
	})
	return nil
}

func (i *Issuer) servePost(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return badRequest("invalid_request", "malformed form body")
	}
	f := r.PostForm
	if err := i.checkService(f.Get("service"), true); err != nil {
		return err
	}
	if f.Get("client_id") == "" {
		return badRequest("invalid_request", "client_id is required")
	}
	access, err := parseScopes(strings.Fields(f.Get("scope")))
	if err != nil {
		return err
	}
	users := i.users()
	g := grant{access: access, offline: f.Get("access_type") == "offline"}
	switch f.Get("grant_type") {
	case "password":
		user := f.Get("username")
		client := i.cfg.Proxies.ClientAddr(r)
		if err := i.cfg.Throttle.Check(user, client); err != nil {
			return throttled(err)
		}
		if !checkPassword(users, user, f.Get("password")) {
			return i.failed(r, user, true, "bad password or unknown user")
		}
		i.cfg.Throttle.Succeeded(user, client)
		g.subject = user
		g.cred, _ = users.Fingerprint(user)
	case "refresh_token":
		// No password is guessed with a signed token: checked and counted by client
		// address only, and a success clears nothing.
		if err := i.cfg.Throttle.Check("", i.cfg.Proxies.ClientAddr(r)); err != nil {
			return throttled(err)
		}
		sub, cred, err := i.checkRefresh(users, f.Get("refresh_token"))
		if err != nil {
			return i.failed(r, sub, false, err.Error())
		}
		g.subject, g.cred = sub, cred
	case "":
		return badRequest("invalid_request", "grant_type is required")
	default:
		return badRequest("unsupported_grant_type", "grant_type must be password or refresh_token")
	}
	resp, err := i.issue(g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// checkService accepts the configured service; an empty one only if not required
// (the GET flow, where clients may leave it out).
func (i *Issuer) checkService(service string, required bool) error {
	if service == i.cfg.Service || (service == "" && !required) {
		return nil
	}
	if service == "" {
		return badRequest("invalid_request", "service is required")
	}
	return badRequest("invalid_request", "unknown service %q", service)
}

// users returns the current users; nil admits nobody.
func (i *Issuer) users() *auth.Htpasswd {
	if i.cfg.Users == nil {
		return nil
	}
	return i.cfg.Users()
}

func checkPassword(users *auth.Htpasswd, user, password string) bool {
	return user != "" && users.Check(user, password)
}

// failed records a refused login with the throttle, against user when it was a
// password of that user, and returns the 401 to send. It is logged at debug level
// only: the throttle logs each burst of failures once. reason must not contain
// secrets.
func (i *Issuer) failed(r *http.Request, user string, password bool, reason string) error {
	client := i.cfg.Proxies.ClientAddr(r)
	i.cfg.Log.Debug("token request refused", "user", user, "client", client.String(), "reason", reason)
	if !password {
		user = ""
	}
	i.cfg.Throttle.Failed(user, client)
	return errBadCredentials
}

// checkRefresh verifies a refresh token and that its subject's htpasswd entry is
// still the one it was issued for, and returns the subject and that entry's
// fingerprint. A token that verifies but whose user left or changed password
// still yields the subject, for the log.
func (i *Issuer) checkRefresh(users *auth.Htpasswd, token string) (subject, cred string, err error) {
	if token == "" {
		return "", "", errors.New("missing refresh token")
	}
	var c refreshClaims
	tok, err := i.refresh.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if err := auth.CheckCritical(t.Header); err != nil {
			return nil, err
		}
		if kid, _ := t.Header["kid"].(string); kid != i.signer.kid {
			return nil, errors.New("unknown kid")
		}
		return i.signer.public(), nil
	})
	if err != nil {
		return "", "", errors.New("invalid refresh token")
	}
	if typ, _ := tok.Header["typ"].(string); typ != refreshTyp || c.TokenUse != "refresh" || c.Subject == "" {
		return "", "", errors.New("not a refresh token")
	}
	fp, ok := users.Fingerprint(c.Subject)
	if !ok {
		return c.Subject, "", errors.New("refresh token of a user no longer in the htpasswd file")
	}
	if subtle.ConstantTimeCompare([]byte(fp), []byte(c.Credential)) != 1 {
		return c.Subject, "", errors.New("refresh token issued before the user's password changed")
	}
	return c.Subject, fp, nil
}

// parseScopes parses scope strings and merges entries for the same resource, keeping the
// order in which resources first appear.
func parseScopes(scopes []string) ([]auth.Access, error) {
	if len(scopes) > maxScopes {
		return nil, badRequest("invalid_scope", "more than %d scopes", maxScopes)
	}
	var out []auth.Access
next:
	for _, s := range scopes {
		a, err := auth.ParseScope(s)
		if err != nil {
			return nil, badRequest("invalid_scope", "invalid scope %q", s)
		}
		for j := range out {
			if out[j].Type == a.Type && out[j].Name == a.Name {
				out[j].Actions = append(out[j].Actions, a.Actions...)
				continue next
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// tokenResponse is the OAuth2 response of the POST flow; the GET flow adds "token".
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// issue signs an access token for what the policy grants g.subject of g.access, and a
// refresh token if offline access was asked by an authenticated subject. A repository
// scope whose name the registry's grammar refuses (manifest.ValidateName: "a/../b",
// "a//b", "A", "a%2fb", ...) is granted nothing, whatever the policy says.
func (i *Issuer) issue(g grant) (*tokenResponse, error) {
	now := i.cfg.Now().UTC().Truncate(time.Second)
	policy := i.cfg.Policy()
	granted := []auth.Access{}
	var scopes []string
	for _, want := range g.access {
		if want.Type == auth.TypeRepository && manifest.ValidateName(want.Name) != nil {
			// Not a name the registry serves: other verifiers trust these
			// tokens, and a glob of theirs could read "a/../b" as "b".
			continue
		}
		a := policy.Allowed(g.subject, want)
		if len(a.Actions) == 0 {
			continue
		}
		granted = append(granted, a)
		scopes = append(scopes, a.String())
	}
	jti, err := randomID()
	if err != nil {
		return nil, err
	}
	access, err := i.signer.sign("JWT", &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   g.subject,
			Audience:  jwt.ClaimStrings{i.cfg.Service},
			ExpiresAt: jwt.NewNumericDate(now.Add(i.cfg.TTL)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		Access: granted,
	})
	if err != nil {
		return nil, err
	}
	resp := &tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer",
		Scope:       strings.Join(scopes, " "),
		ExpiresIn:   int(i.cfg.TTL / time.Second),
		IssuedAt:    now.Format(time.RFC3339),
	}
	if g.offline && g.subject != "" && g.cred != "" {
		if jti, err = randomID(); err != nil {
			return nil, err
		}
		resp.RefreshToken, err = i.signer.sign(refreshTyp, &refreshClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer:    i.cfg.Issuer,
				Subject:   g.subject,
				Audience:  jwt.ClaimStrings{refreshAudience(i.cfg.Service)},
				ExpiresAt: jwt.NewNumericDate(now.Add(i.cfg.RefreshTTL)),
				NotBefore: jwt.NewNumericDate(now),
				IssuedAt:  jwt.NewNumericDate(now),
				ID:        jti,
			},
			TokenUse:   "refresh",
			Credential: g.cred,
		})
		if err != nil {
			return nil, err
		}
	}
	return resp, nil
}

func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeError renders err: OAuth2 style ({"error","error_description"}) for POST, Docker
// style ({"errors":[{"code","message"}]}) otherwise.
func (i *Issuer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var te *tokenError
	if !errors.As(err, &te) {
		i.cfg.Log.Error("token request failed", "err", err)
		te = &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "internal error"}
	}
	if te.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(te.retryAfter))
	}
	if r.Method == http.MethodPost {
		writeJSON(w, te.status, map[string]string{"error": te.code, "error_description": te.desc})
		return
	}
	code := strings.ToUpper(te.code)
	if te.status == http.StatusTooManyRequests {
		code = "TOOMANYREQUESTS"
	}
	if te.status == http.StatusUnauthorized {
		code = "UNAUTHORIZED"
		w.Header().Set("WWW-Authenticate", `Basic realm=`+strconv.Quote(i.cfg.Service))
	}
	writeJSON(w, te.status, map[string]any{"errors": []map[string]string{{"code": code, "message": te.desc}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if m, ok := v.(map[string]any); ok && m["refresh_token"] == "" {
		delete(m, "refresh_token")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// JWKSHandler serves the JWK Set of the signing key (/auth/jwks.json), for verifiers that
// fetch keys instead of configuring them.
func (i *Issuer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Content-Length", strconv.Itoa(len(i.jwks)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(i.jwks)
		}
	})
}

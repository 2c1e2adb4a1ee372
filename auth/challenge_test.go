package auth

import (
	"errors"
	"net/http"
	"testing"
)

func TestChallengeHeader(t *testing.T) {
	for _, tc := range []struct {
		c    Challenge
		want string
	}{
		{Challenge{Scheme: "Bearer", Realm: "https://h/auth/token", Service: "berth",
			Scope: []Access{{"repository", "a/b", []string{"pull", "push"}}}, Code: ErrorInsufficientScope},
			`Bearer realm="https://h/auth/token",service="berth",scope="repository:a/b:pull,push",error="insufficient_scope"`},
		{Challenge{Scheme: "Bearer", Realm: "https://h/auth/token", Service: "berth"},
			`Bearer realm="https://h/auth/token",service="berth"`},
		{Challenge{Scheme: "Bearer", Realm: "r", Service: "s", Scope: []Access{
			{"repository", "a/b", []string{"pull"}}, {"repository", "c", []string{"pull", "push"}}}, Code: ErrorInvalidToken},
			`Bearer realm="r",service="s",scope="repository:a/b:pull repository:c:pull,push",error="invalid_token"`},
		{Challenge{Scheme: "Basic", Realm: `my "berth" \ realm` + "\r\nX-Injected: 1"},
			`Basic realm="my \"berth\" \\ realmX-Injected: 1"`},
	} {
		if got := tc.c.Header(); got != tc.want {
			t.Errorf("Header() =\n %s\nwant\n %s", got, tc.want)
		}
	}
}

func TestChallengeIs(t *testing.T) {
	cause := errors.New("cause")
	var err error = &Challenge{Scheme: "Bearer", Status: http.StatusUnauthorized, Cause: cause}
	if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrDenied) || !errors.Is(err, cause) {
		t.Errorf("401 challenge: Is(ErrUnauthorized)=%v Is(ErrDenied)=%v Is(cause)=%v",
			errors.Is(err, ErrUnauthorized), errors.Is(err, ErrDenied), errors.Is(err, cause))
	}
	err = &Challenge{Scheme: "Bearer", Status: http.StatusForbidden}
	if errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrDenied) {
		t.Errorf("403 challenge does not match ErrDenied only")
	}
	var c *Challenge
	if !errors.As(wrap(err), &c) || c.Status != http.StatusForbidden {
		t.Errorf("errors.As through a wrap failed")
	}
}

func wrap(err error) error { return errors.Join(errors.New("context"), err) }

// TestChallengeMessage: what each kind of refusal tells the person.
func TestChallengeMessage(t *testing.T) {
	repo := Access{Type: TypeRepository, Name: "a/b", Actions: []string{ActionPull, ActionPush}}
	for _, tc := range []struct {
		name string
		c    Challenge
		want string
	}{
		{"anonymous", Challenge{Scheme: "Bearer", Scope: []Access{repo}, Cause: errNoCredentials},
			`log in to pull from and push to repository "a/b"`},
		{"anonymous at /v2/", Challenge{Scheme: "Bearer", Cause: errNoCredentials}, "authentication required: log in"},
		{"invalid token", Challenge{Scheme: "Bearer", Scope: []Access{repo}, Code: ErrorInvalidToken, Cause: ErrInvalidToken},
			"the token is not valid here (expired, or issued for another registry): log in again"},
		{"known user refused", Challenge{Scheme: "Bearer", Scope: []Access{repo}, Code: ErrorInsufficientScope, Subject: "alice",
			Refused: []Access{{Type: TypeRepository, Name: "a/b", Actions: []string{ActionPush}}, {Type: TypeRegistry, Name: "catalog", Actions: []string{ActionAll}}}},
			`user "alice" may not push to repository "a/b", nor list the catalog`},
		{"anonymous token refused", Challenge{Scheme: "Bearer", Scope: []Access{repo}, Code: ErrorInsufficientScope},
			`the token does not grant pull from and push to repository "a/b": log in as a user who may`},
		{"wrong password", Challenge{Scheme: "Basic", Cause: errBadCredentials}, "wrong user name or password"},
		{"basic, no credentials", Challenge{Scheme: "Basic", Cause: errNoCredentials}, "authentication required: log in"},
	} {
		if got := tc.c.Message(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if got := errors.Is(&tc.c, ErrInsufficientScope); got != (tc.c.Subject != "") {
			t.Errorf("%s: errors.Is(ErrInsufficientScope) = %v", tc.name, got)
		}
	}
}

package pull

import (
	"net/http"
	"reflect"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		want    []challenge
	}{
		{[]string{`Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull"`},
			[]challenge{{"bearer", map[string]string{"realm": "https://auth.test/token", "service": "registry.test", "scope": "repository:a/b:pull"}}}},
		{[]string{`Basic realm="Registry Realm"`},
			[]challenge{{"basic", map[string]string{"realm": "Registry Realm"}}}},
		{[]string{`Basic realm="x", Bearer realm="https://a/t", service=s`},
			[]challenge{{"basic", map[string]string{"realm": "x"}}, {"bearer", map[string]string{"realm": "https://a/t", "service": "s"}}}},
		{[]string{`Negotiate`, `BEARER Realm = "https://a/t" , scope="repository:x:pull,push" ,error="insufficient_scope"`},
			[]challenge{{"negotiate", map[string]string{}}, {"bearer", map[string]string{"realm": "https://a/t", "scope": "repository:x:pull,push", "error": "insufficient_scope"}}}},
		{[]string{`Bearer realm="a\"b\\c"`},
			[]challenge{{"bearer", map[string]string{"realm": `a"b\c`}}}},
		{[]string{`Bearer realm="unterminated`},
			[]challenge{{"bearer", map[string]string{"realm": "unterminated"}}}},
		{[]string{`Negotiate abc==, Basic realm=r`},
			[]challenge{{"negotiate", map[string]string{"abc": ""}}, {"basic", map[string]string{"realm": "r"}}}},
		{[]string{`"garbage`}, []challenge{{"garbage", map[string]string{}}}},
		{nil, nil},
	} {
		h := http.Header{}
		for _, v := range tc.headers {
			h.Add("WWW-Authenticate", v)
		}
		got := parseChallenges(h)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChallenges(%q) = %v, want %v", tc.headers, got, tc.want)
		}
	}
}

func TestPickPrefersBearer(t *testing.T) {
	cs := parseChallengeList(`Basic realm="x", Bearer realm="y"`)
	if c, ok := pick(cs); !ok || c.scheme != "bearer" {
		t.Errorf("pick = %v, %t; want bearer", c, ok)
	}
	if _, ok := pick(parseChallengeList(`Negotiate`)); ok {
		t.Error("pick accepted Negotiate")
	}
}

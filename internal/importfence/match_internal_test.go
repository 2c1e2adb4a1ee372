package importfence

import "testing"

// TestMatch checks the pattern forms a Rule accepts, as go list reads them.
func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, dep string
		std, want    bool
	}{
		{"net/http", "net/http", true, true},
		{"net/http", "net/http/httptest", true, false},
		{"net/http/...", "net/http", true, true},
		{"net/http/...", "net/http/httptest", true, true},
		{"net/http/...", "net/httpx", true, false},
		{"github.com/aws/...", "github.com/aws/smithy-go", false, true},
		{"github.com/aws/...", "github.com/awslabs/x", false, false},
		{"github.com/aws/...", "github.com/aws", false, true},
		{"github.com/aws/", "github.com/aws/smithy-go", false, true},
		{"github.com/aws/", "github.com/aws", false, false},
		{"github.com/aws/", "github.com/awslabs/x", false, false},
		{"...aws...", "github.com/awslabs/x", false, true},
		{"...aws...", "github.com/gorilla/mux", false, false},
		{"gopkg.in/yaml.v3", "gopkg.in/yamlxv3", false, false},
		{"...", "anything/at/all", false, true},
		{"std", "os", true, true},
		{"std", "gopkg.in/yaml.v3", false, false},
	} {
		ps, err := compile([]string{tc.pattern})
		if err != nil {
			t.Fatal(err)
		}
		if got := ps.match(tc.dep, tc.std) != ""; got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.dep, got, tc.want)
		}
	}
}

package config_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the effective configs")

// TestGolden loads every testdata/*.yaml (no environment) and compares the
// effective configuration, dumped as YAML, with testdata/*.golden.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.yaml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := config.Load(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := c.WriteYAML(&got); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -update)", err)
			}
			if got.String() != string(want) {
				t.Errorf("effective config of %s differs from %s (go test ./internal/config -update rewrites it):\n--- got\n%s--- want\n%s", file, golden, got.String(), want)
			}
			// The dump is itself a valid config that loads to the same values.
			again, err := config.Load(writeFile(t, got.String()), nil)
			if err != nil {
				t.Fatalf("reloading the dump: %v", err)
			}
			if !reflect.DeepEqual(again, c) {
				t.Errorf("reloaded dump = %+v, want %+v", again, c)
			}
		})
	}
}

// TestConfigsDirectory loads every serve config example in configs/, so that
// they cannot rot, and checks that configs/berth.yaml spells out every key at its default
// value with its environment variable in a comment.
func TestConfigsDirectory(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs/*.yaml: %v", err)
	}
	for _, file := range files {
		if filepath.Base(file) == "policy.yaml" {
			continue // an access policy, not a serve config: auth's TestExamplePolicy loads it
		}
		if _, err := config.Load(file, nil); err != nil {
			t.Errorf("%v", err)
		}
	}

	const full = "../../configs/berth.yaml"
	c, err := config.Load(full, nil)
	if err != nil {
		t.Fatal(err)
	}
	if def := config.Default(); !reflect.DeepEqual(*c, def) {
		t.Errorf("%s does not hold the defaults:\n got %+v\nwant %+v", full, *c, def)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.EnvVars() {
		if lookup(doc.Content[0], strings.Split(v.Key, ".")) == nil {
			t.Errorf("%s lacks key %s", full, v.Key)
		}
		if !bytes.Contains(b, []byte("# env: "+v.Name+"\n")) {
			t.Errorf("%s lacks the comment \"# env: %s\" for %s", full, v.Name, v.Key)
		}
	}
}

// lookup returns the value node at path in a mapping node, or nil.
func lookup(n *yaml.Node, path []string) *yaml.Node {
	if len(path) == 0 {
		return n
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == path[0] {
			return lookup(n.Content[i+1], path[1:])
		}
	}
	return nil
}

func TestDefaultIsValid(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c2, err := config.Load("", nil); err != nil || !reflect.DeepEqual(*c2, c) {
		t.Fatalf("Load with nothing = %+v, %v; want the defaults", c2, err)
	}
}

// TestFileErrors checks that a bad file is refused with one line that names
// the file, the line and the key.
func TestFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error, after "FILE:"
	}{
		{"unknown top-level key", "log:\n  level: info\nhtpp:\n  addr: x\n",
			[]string{`:3: unknown key "htpp"`, "known keys at the top level: log, http, storage"}},
		{"unknown nested key", "http:\n  addr: :80\n  adr: :81\n",
			[]string{`:3: unknown key "http.adr"`, "readHeaderTimeout"}},
		{"unknown deep key", "storage:\n  filesystem:\n    rootdir: /x\n",
			[]string{`:3: unknown key "storage.filesystem.rootdir"`}},
		{"key in wrong case", "http:\n  drainTimeOut: 1m\n", []string{`:2: unknown key "http.drainTimeOut"`}},
		{"unknown key under empty section", "log:\nstorage:\n  gcs:\n    bucket: b\n", []string{`:3: unknown key "storage.gcs"`}},
		{"unknown s3 key", "storage:\n  s3:\n    secret: x\n", []string{`:3: unknown key "storage.s3.secret"`, "secretKey"}},
		{"repeated key", "log:\n  level: info\n  level: debug\n", []string{`:3: key "log.level" repeated (first at line 2)`}},
		{"bad bool", "log:\n  accessLog: maybe\n", []string{`:2: log.accessLog: cannot use "maybe": want true or false`}},
		{"duration without unit", "http:\n  idleTimeout: 30\n", []string{`:2: http.idleTimeout: cannot use "30": want a duration`}},
		{"bad duration", "http:\n  drainTimeout: soon\n", []string{`:2: http.drainTimeout: cannot use "soon"`}},
		{"list for a string", "http:\n  addr: [a, b]\n", []string{`:2: http.addr: cannot use a list: want a string`}},
		{"scalar for a section", "storage: filesystem\n", []string{`:1: storage: want a mapping of keys (driver, filesystem, s3, delete, manifests, uploadPurging, maxConcurrentUploads), got "filesystem"`}},
		{"not a mapping", "- log\n", []string{`:1: top level: want a mapping`}},
		{"two documents", "log:\n  level: info\n---\nhttp:\n", []string{`:3: a second YAML document`}},
		{"syntax error", "http:\n  addr: [\n", []string{`.yaml:`, "did not find expected"}},
		{"bad tab indentation", "http:\n\taddr: x\n", []string{`.yaml:2: found character that cannot start any token`}},
		// Decoded fine, then refused by Validate.
		{"bad level", "log:\n  level: verbose\n", []string{`log.level: "verbose" is not one of debug, info, warn or error`}},
		{"bad format", "log:\n  format: xml\n", []string{`log.format: "xml" is not one of text or json`}},
		{"bad driver", "storage:\n  driver: gcs\n", []string{`storage.driver: "gcs" is not one of filesystem, inmemory or s3`}},
		{"s3 without bucket", "storage:\n  driver: s3\n", []string{`storage.s3.bucket: must be set when storage.driver is s3`}},
		{"s3 minimal", "storage:\n  driver: s3\n  s3:\n    bucket: b\n", nil},
		{"s3 section ignored for filesystem", "storage:\n  s3:\n    endpoint: nope\n    accessKey: a\n", nil},
		{"s3 endpoint without scheme", s3yaml("endpoint: minio:9000"), []string{`storage.s3.endpoint: "minio:9000": want an http:// or https:// URL`}},
		{"s3 endpoint bare host", s3yaml("endpoint: minio.example"), []string{`storage.s3.endpoint: "minio.example": want an http:// or https:// URL`}},
		{"s3 endpoint ftp", s3yaml("endpoint: ftp://minio.example"), []string{`want an http:// or https:// URL`}},
		{"s3 endpoint without host", s3yaml("endpoint: 'http://'"), []string{`storage.s3.endpoint: "http://" has no host`}},
		{"s3 endpoint unparsable", s3yaml("endpoint: 'http://[::1'"), []string{`storage.s3.endpoint: "http://[::1" is not a URL`}},
		{"s3 endpoint with query", s3yaml("endpoint: 'http://minio:9000/?x=1'"), []string{`without query or fragment`}},
		{"s3 endpoint with credentials, not echoed", s3yaml("endpoint: 'http://ak:hunter2@minio:9000'"), []string{`storage.s3.endpoint: must not hold credentials`}},
		{"s3 endpoint http", s3yaml("endpoint: 'http://127.0.0.1:7070'\n    pathStyle: true"), nil},
		{"s3 endpoint https with path", s3yaml("endpoint: 'https://s3.example/storage/'"), nil},
		{"s3 access key alone", s3yaml("accessKey: AKIA"), []string{`storage.s3: set both accessKey and secretKey, or neither`}},
		{"s3 secret key alone, not echoed", s3yaml("secretKey: hunter2"), []string{`storage.s3: set both accessKey and secretKey, or neither`}},
		{"s3 both keys", s3yaml("accessKey: AKIA\n    secretKey: hunter2"), nil},
		{"s3 prefix with slashes", s3yaml("prefix: /a/b/"), nil},
		{"s3 prefix with dot-dot", s3yaml("prefix: a/../b"), []string{`storage.s3.prefix: "a/../b": want slash-separated names`}},
		{"s3 prefix with empty part", s3yaml("prefix: a//b"), []string{`storage.s3.prefix: "a//b"`}},
		{"s3 zero expiry", s3yaml("presignExpiry: 0s"), []string{`storage.s3.presignExpiry: 0s must be positive and at most 168h`}},
		{"s3 expiry over 7 days", s3yaml("presignExpiry: 169h"), []string{`storage.s3.presignExpiry: 169h0m0s must be positive`}},
		{"s3 expiry of 7 days", s3yaml("presignExpiry: 168h"), nil},
		{"s3 bad redirect", s3yaml("redirect: sometimes"), []string{`storage.s3.redirect: cannot use "sometimes": want true or false`}},
		{"purge age under 1h", "storage:\n  uploadPurging:\n    age: 59m\n", []string{`storage.uploadPurging.age: 59m0s must be at least 1h0m0s, so that a slow push is never purged`}},
		{"purge age of 1h", "storage:\n  uploadPurging:\n    age: 1h\n", nil},
		{"zero purge interval", "storage:\n  uploadPurging:\n    interval: 0s\n", []string{`storage.uploadPurging.interval: 0s must be positive`}},
		{"negative purge interval", "storage:\n  uploadPurging:\n    interval: -1h\n", []string{`storage.uploadPurging.interval: -1h0m0s must be positive`}},
		{"purging disabled ignores age and interval", "storage:\n  uploadPurging:\n    enabled: false\n    age: 0s\n    interval: 0s\n", nil},
		{"empty root", "storage:\n  filesystem:\n    root: ''\n", []string{`storage.filesystem.root: must be set`}},
		{"root may be empty for inmemory", "storage:\n  driver: inmemory\n  filesystem:\n    root: ''\n", nil},
		{"addr without port", "http:\n  addr: localhost\n", []string{`http.addr: "localhost" is not host:port`}},
		{"addr with bad port", "http:\n  addr: 'localhost:http'\n", []string{`http.addr: "localhost:http": port "http" is not a number`}},
		{"addr port too big", "http:\n  addr: ':65536'\n", []string{`port "65536"`}},
		{"zero header timeout", "http:\n  readHeaderTimeout: 0s\n", []string{`http.readHeaderTimeout: 0s must be positive`}},
		{"negative drain", "http:\n  drainTimeout: -1s\n", []string{`http.drainTimeout: -1s must not be negative`}},
		{"negative connection cap", "http:\n  maxConnections: -1\n", []string{`http.maxConnections: -1 must not be negative (0 is no cap)`}},
		{"connection cap", "http:\n  maxConnections: 200\n", nil},
		{"negative upload cap", "storage:\n  maxConcurrentUploads: -3\n", []string{`storage.maxConcurrentUploads: -3 must not be negative (0 is no cap)`}},
		{"upload cap", "storage:\n  maxConcurrentUploads: 8\n", nil},
		{"half tls", "http:\n  tls:\n    certificate: c.pem\n", []string{`http.tls: set both certificate and key, or neither`}},
		{"trusted proxies", "http:\n  trustedProxies: [10.0.0.1, 10.0.0.0/8, '::1', 'fd00::/8', 192.0.2.9/32]\n", nil},
		{"trusted proxy host name", "http:\n  trustedProxies: [10.0.0.1, proxy.example]\n",
			[]string{`http.trustedProxies: "proxy.example" is not an IP address or a CIDR prefix such as 10.0.0.0/8`}},
		{"trusted proxy bad prefix", "http:\n  trustedProxies: [10.0.0.0/33]\n", []string{`http.trustedProxies: "10.0.0.0/33" is not an IP address`}},
		{"trusted proxy with port", "http:\n  trustedProxies: ['10.0.0.1:8080']\n", []string{`http.trustedProxies: "10.0.0.1:8080"`}},
		{"trusted proxies not a list", "http:\n  trustedProxies: {a: b}\n", []string{`:2: http.trustedProxies: cannot use a mapping: want a list of strings`}},
		{"gc grace 0 means none", "gc:\n  grace: 0s\n", nil},
		{"negative gc interval", "gc:\n  interval: -1m\n", []string{`gc.interval: -1m0s must not be negative`}},
		{"negative gc grace", "gc:\n  grace: -1s\n", []string{`gc.grace: -1s must not be negative (0 means no grace)`}},
		{"zero uploadMaxAge", "gc:\n  uploadMaxAge: 0s\n", []string{`gc.uploadMaxAge: 0s must be positive`}},
		{"uploadMaxAge under grace", "gc:\n  grace: 48h\n", []string{`gc.uploadMaxAge: 24h0m0s must be at least gc.grace (48h0m0s)`}},
		{"uploadMaxAge equal to grace", "gc:\n  grace: 2h\n  uploadMaxAge: 2h\n", nil},
		{"retention rules", "gc:\n  retention:\n    - repositories: a/*\n      keepLast: 3\n    - repositories: '**'\n      keepTags: [latest, 'v\\d+']\n      olderThan: 48h\n", nil},
		{"retention not a list", "gc:\n  retention: '**'\n",
			[]string{`:2: gc.retention: want a list of mappings of keys (repositories, keepLast, keepTags, olderThan), got "**"`}},
		{"retention item not a mapping", "gc:\n  retention:\n    - a/*\n", []string{`:3: gc.retention[0]: want a mapping of keys`}},
		{"retention unknown key", "gc:\n  retention:\n    - repositories: a\n      keepLast: 1\n    - repositories: b\n      keep: 2\n",
			[]string{`:6: unknown key "gc.retention[1].keep" (known keys under gc.retention[1]: repositories, keepLast, keepTags, olderThan)`}},
		{"retention bad keepLast", "gc:\n  retention:\n    - repositories: a\n      keepLast: many\n",
			[]string{`:4: gc.retention[0].keepLast: cannot use "many": want an integer`}},
		{"retention duration without unit", "gc:\n  retention:\n    - repositories: a\n      olderThan: 30\n",
			[]string{`:4: gc.retention[0].olderThan: cannot use "30": want a duration`}},
		{"retention keepTags not a list", "gc:\n  retention:\n    - repositories: a\n      keepTags: {a: b}\n",
			[]string{`:4: gc.retention[0].keepTags: cannot use a mapping`}},
		{"retention without repositories", "gc:\n  retention:\n    - keepLast: 1\n", []string{`gc.retention[0].repositories: required`}},
		{"retention bad glob", "gc:\n  retention:\n    - repositories: 'a/['\n", []string{`gc.retention[0].repositories: "a/[" is not a valid glob`}},
		{"retention empty glob component", "gc:\n  retention:\n    - repositories: 'a//b'\n", []string{`gc.retention[0].repositories: "a//b" is not a valid glob`}},
		{"retention bad regexp", "gc:\n  retention:\n    - repositories: a\n    - repositories: b\n      keepTags: ['v(']\n",
			[]string{`gc.retention[1].keepTags: "v(" is not a Go regular expression: missing closing )`}},
		{"retention regexp escaping its anchors", "gc:\n  retention:\n    - repositories: a\n      keepTags: ['a)|(b']\n",
			[]string{`gc.retention[0].keepTags: "a)|(b" is not a Go regular expression`}},
		{"retention negative values", "gc:\n  retention:\n    - repositories: a\n      keepLast: -1\n      olderThan: -1h\n",
			[]string{`gc.retention[0].keepLast: -1 must not be negative; gc.retention[0].olderThan: -1h0m0s must not be negative`}},
		{"every invalid value at once", "log:\n  level: x\n  format: y\n",
			[]string{`log.level: "x"`, `; log.format: "y"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, tc.yaml)
			_, err := config.Load(file, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.yaml)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.HasPrefix(tc.want[0], ":") && !strings.HasPrefix(msg, file+":") {
				t.Errorf("error %q does not start with the file name", msg)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

// TestEnvNames pins the environment variables: they are an interface that
// deployments depend on, and renaming a yaml key renames its variable.
func TestEnvNames(t *testing.T) {
	want := []config.EnvVar{
		{"BERTH_LOG_LEVEL", "log.level", "string", "info"},
		{"BERTH_LOG_FORMAT", "log.format", "string", "text"},
		{"BERTH_LOG_ACCESSLOG", "log.accessLog", "bool", "true"},
		{"BERTH_HTTP_ADDR", "http.addr", "string", "127.0.0.1:5000"},
		{"BERTH_HTTP_READHEADERTIMEOUT", "http.readHeaderTimeout", "duration", "30s"},
		{"BERTH_HTTP_BODYTIMEOUT", "http.bodyTimeout", "duration", "1m0s"},
		{"BERTH_HTTP_IDLETIMEOUT", "http.idleTimeout", "duration", "2m0s"},
		{"BERTH_HTTP_DRAINTIMEOUT", "http.drainTimeout", "duration", "5m0s"},
		{"BERTH_HTTP_MAXCONNECTIONS", "http.maxConnections", "integer", "0"},
		{"BERTH_HTTP_TLS_CERTIFICATE", "http.tls.certificate", "string", ""},
		{"BERTH_HTTP_TLS_KEY", "http.tls.key", "string", ""},
		{"BERTH_HTTP_TRUSTEDPROXIES", "http.trustedProxies", "list", ""},
		{"BERTH_STORAGE_DRIVER", "storage.driver", "string", "filesystem"},
		{"BERTH_STORAGE_FILESYSTEM_ROOT", "storage.filesystem.root", "string", "./data"},
		{"BERTH_STORAGE_FILESYSTEM_WARNFREEBYTES", "storage.filesystem.warnFreeBytes", "integer", "1073741824"},
		{"BERTH_STORAGE_S3_BUCKET", "storage.s3.bucket", "string", ""},
		{"BERTH_STORAGE_S3_REGION", "storage.s3.region", "string", ""},
		{"BERTH_STORAGE_S3_ENDPOINT", "storage.s3.endpoint", "string", ""},
		{"BERTH_STORAGE_S3_PATHSTYLE", "storage.s3.pathStyle", "bool", "false"},
		{"BERTH_STORAGE_S3_ACCESSKEY", "storage.s3.accessKey", "string", ""},
		{"BERTH_STORAGE_S3_SECRETKEY", "storage.s3.secretKey", "string", ""},
		{"BERTH_STORAGE_S3_PREFIX", "storage.s3.prefix", "string", ""},
		{"BERTH_STORAGE_S3_REDIRECT", "storage.s3.redirect", "bool", "true"},
		{"BERTH_STORAGE_S3_PRESIGNEXPIRY", "storage.s3.presignExpiry", "duration", "20m0s"},
		{"BERTH_STORAGE_DELETE_ENABLED", "storage.delete.enabled", "bool", "true"},
		{"BERTH_STORAGE_MANIFESTS_SPARSE", "storage.manifests.sparse", "bool", "true"},
		{"BERTH_STORAGE_UPLOADPURGING_ENABLED", "storage.uploadPurging.enabled", "bool", "true"},
		{"BERTH_STORAGE_UPLOADPURGING_AGE", "storage.uploadPurging.age", "duration", "168h0m0s"},
		{"BERTH_STORAGE_UPLOADPURGING_INTERVAL", "storage.uploadPurging.interval", "duration", "24h0m0s"},
		{"BERTH_STORAGE_MAXCONCURRENTUPLOADS", "storage.maxConcurrentUploads", "integer", "0"},
		{"BERTH_AUTH_MODE", "auth.mode", "string", "none"},
		{"BERTH_AUTH_ALLOWINSECURENONE", "auth.allowInsecureNone", "bool", "false"},
		{"BERTH_AUTH_HTPASSWD", "auth.htpasswd", "string", ""},
		{"BERTH_AUTH_TOKEN_REALM", "auth.token.realm", "string", ""},
		{"BERTH_AUTH_TOKEN_SERVICE", "auth.token.service", "string", "berth"},
		{"BERTH_AUTH_TOKEN_ISSUER", "auth.token.issuer", "string", "berth"},
		{"BERTH_AUTH_TOKEN_JWKS", "auth.token.jwks", "string", ""},
		{"BERTH_AUTH_TOKEN_ROOTCERTBUNDLE", "auth.token.rootCertBundle", "string", ""},
		{"BERTH_AUTH_ISSUER_ENABLED", "auth.issuer.enabled", "bool", "true"},
		{"BERTH_AUTH_ISSUER_KEY", "auth.issuer.key", "string", "./data/auth-key.pem"},
		{"BERTH_AUTH_ISSUER_POLICY", "auth.issuer.policy", "string", ""},
		{"BERTH_AUTH_ISSUER_TTL", "auth.issuer.ttl", "duration", "5m0s"},
		{"BERTH_AUTH_ISSUER_REFRESHTTL", "auth.issuer.refreshTTL", "duration", "720h0m0s"},
		{"BERTH_GC_INTERVAL", "gc.interval", "duration", "0s"},
		{"BERTH_GC_GRACE", "gc.grace", "duration", "1h0m0s"},
		{"BERTH_GC_DELETEUNTAGGED", "gc.deleteUntagged", "bool", "false"},
		{"BERTH_GC_UPLOADMAXAGE", "gc.uploadMaxAge", "duration", "24h0m0s"},
		{"BERTH_GC_DRYRUN", "gc.dryRun", "bool", "false"},
		{"BERTH_GC_RESERVEBYTES", "gc.reserveBytes", "integer", "1048576"},
		{"BERTH_UI_ENABLED", "ui.enabled", "bool", "true"},
	}
	got := config.EnvVars()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EnvVars() =\n%+v\nwant\n%+v", got, want)
	}
	seen := make(map[string]string)
	for _, v := range got {
		if k, dup := seen[v.Name]; dup {
			t.Errorf("%s overrides both %s and %s", v.Name, k, v.Key)
		}
		seen[v.Name] = v.Key
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"BERTH_LOG_LEVEL":                      "debug",
		"BERTH_LOG_FORMAT":                     "json",
		"BERTH_LOG_ACCESSLOG":                  "0",
		"BERTH_HTTP_ADDR":                      ":9000",
		"BERTH_HTTP_READHEADERTIMEOUT":         "5s",
		"BERTH_HTTP_IDLETIMEOUT":               "1h",
		"BERTH_HTTP_DRAINTIMEOUT":              "0s",
		"BERTH_HTTP_MAXCONNECTIONS":            "200",
		"BERTH_HTTP_TLS_CERTIFICATE":           "c.pem",
		"BERTH_HTTP_TLS_KEY":                   "k.pem",
		"BERTH_HTTP_TRUSTEDPROXIES":            "10.0.0.0/8, 192.0.2.7,fd00::/8",
		"BERTH_STORAGE_DRIVER":                 "s3",
		"BERTH_STORAGE_FILESYSTEM_ROOT":        "/srv/berth",
		"BERTH_STORAGE_S3_BUCKET":              "images",
		"BERTH_STORAGE_S3_REGION":              "eu-north-1",
		"BERTH_STORAGE_S3_ENDPOINT":            "http://127.0.0.1:7070",
		"BERTH_STORAGE_S3_PATHSTYLE":           "true",
		"BERTH_STORAGE_S3_ACCESSKEY":           "AKIA",
		"BERTH_STORAGE_S3_SECRETKEY":           "hunter2",
		"BERTH_STORAGE_S3_PREFIX":              "berth",
		"BERTH_STORAGE_S3_REDIRECT":            "false",
		"BERTH_STORAGE_S3_PRESIGNEXPIRY":       "1h",
		"BERTH_STORAGE_DELETE_ENABLED":         "false",
		"BERTH_STORAGE_MANIFESTS_SPARSE":       "false",
		"BERTH_STORAGE_UPLOADPURGING_ENABLED":  "false",
		"BERTH_STORAGE_UPLOADPURGING_AGE":      "72h",
		"BERTH_STORAGE_UPLOADPURGING_INTERVAL": "6h",
		"BERTH_STORAGE_MAXCONCURRENTUPLOADS":   "16",
		"BERTH_AUTH_MODE":                      "token",
		"BERTH_AUTH_ALLOWINSECURENONE":         "true",
		"BERTH_AUTH_HTPASSWD":                  "/etc/htpasswd",
		"BERTH_AUTH_TOKEN_REALM":               "https://r.example/auth/token",
		"BERTH_AUTH_TOKEN_SERVICE":             "r.example",
		"BERTH_AUTH_TOKEN_ISSUER":              "r-issuer",
		"BERTH_AUTH_TOKEN_JWKS":                "keys.jwks",
		"BERTH_AUTH_TOKEN_ROOTCERTBUNDLE":      "roots.pem",
		"BERTH_AUTH_ISSUER_ENABLED":            "false",
		"BERTH_AUTH_ISSUER_KEY":                "key.pem",
		"BERTH_AUTH_ISSUER_POLICY":             "policy.yaml",
		"BERTH_AUTH_ISSUER_TTL":                "10m",
		"BERTH_AUTH_ISSUER_REFRESHTTL":         "24h",
		"BERTH_GC_INTERVAL":                    "30m",
		"BERTH_GC_GRACE":                       "0s",
		"BERTH_GC_DELETEUNTAGGED":              "true",
		"BERTH_GC_UPLOADMAXAGE":                "2h",
		"BERTH_GC_DRYRUN":                      "1",
		"BERTH_GC_RESERVEBYTES":                "0",
		"BERTH_UNRELATED":                      "ignored",
	}
	c, err := config.Load("", mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Log: config.Log{Level: "debug", Format: "json", AccessLog: false},
		HTTP: config.HTTP{
			Addr: ":9000", ReadHeaderTimeout: 5 * time.Second, BodyTimeout: time.Minute, IdleTimeout: time.Hour, DrainTimeout: 0,
			MaxConnections: 200,
			TLS:            config.TLS{Certificate: "c.pem", Key: "k.pem"},
			TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "fd00::/8"},
		},
		Storage: config.Storage{
			Driver:     "s3",
			Filesystem: config.Filesystem{Root: "/srv/berth", WarnFreeBytes: 1 << 30},
			S3: config.S3{
				Bucket: "images", Region: "eu-north-1", Endpoint: "http://127.0.0.1:7070", PathStyle: true,
				AccessKey: "AKIA", SecretKey: "hunter2", Prefix: "berth", Redirect: false, PresignExpiry: time.Hour,
			},
			Delete:               config.Delete{Enabled: false},
			Manifests:            config.Manifests{Sparse: false},
			UploadPurging:        config.UploadPurging{Enabled: false, Age: 72 * time.Hour, Interval: 6 * time.Hour},
			MaxConcurrentUploads: 16,
		},
		Auth: config.Auth{
			Mode: "token", AllowInsecureNone: true, Htpasswd: "/etc/htpasswd",
			Token: config.Token{Realm: "https://r.example/auth/token", Service: "r.example", Issuer: "r-issuer",
				JWKS: "keys.jwks", RootCertBundle: "roots.pem"},
			Issuer: config.Issuer{Enabled: false, Key: "key.pem", Policy: "policy.yaml", TTL: 10 * time.Minute,
				RefreshTTL: 24 * time.Hour},
		},
		GC: config.GC{Interval: 30 * time.Minute, Grace: 0, DeleteUntagged: true, UploadMaxAge: 2 * time.Hour,
			DryRun: true, ReserveBytes: 0, Retention: []config.RetentionRule{}},
		Proxy: config.Proxy{Upstreams: []config.Upstream{}},
		UI:    config.UI{Enabled: true},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        string
	}{
		{"BERTH_HTTP_IDLETIMEOUT", "30", `BERTH_HTTP_IDLETIMEOUT="30": want a duration such as 30s, 5m or 1h30m (overrides http.idleTimeout)`},
		{"BERTH_HTTP_DRAINTIMEOUT", "", `BERTH_HTTP_DRAINTIMEOUT="": want a duration`},
		{"BERTH_LOG_ACCESSLOG", "yes please", `BERTH_LOG_ACCESSLOG="yes please": want true or false (overrides log.accessLog)`},
		{"BERTH_STORAGE_DELETE_ENABLED", "", `BERTH_STORAGE_DELETE_ENABLED="": want true or false`},
		{"BERTH_STORAGE_S3_PRESIGNEXPIRY", "20", `BERTH_STORAGE_S3_PRESIGNEXPIRY="20": want a duration`},
		{"BERTH_STORAGE_S3_PATHSTYLE", "path", `BERTH_STORAGE_S3_PATHSTYLE="path": want true or false (overrides storage.s3.pathStyle)`},
		// Parsed, then refused by Validate, which names the key.
		{"BERTH_LOG_LEVEL", "INFO", `log.level: "INFO" is not one of`},
		{"BERTH_HTTP_ADDR", "", `http.addr: "" is not host:port`},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := config.Load("", mapEnv(map[string]string{tc.name: tc.value}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestPrecedence: defaults < file < environment < overrides (flags).
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "log:\n  level: warn\n  format: json\nhttp:\n  addr: file:1\n  idleTimeout: 1m\nauth:\n  allowInsecureNone: true\n")
	env := mapEnv(map[string]string{
		"BERTH_HTTP_ADDR":        "env:2",
		"BERTH_HTTP_IDLETIMEOUT": "2m",
		"BERTH_LOG_FORMAT":       "text",
	})
	flagAddr := func(c *config.Config) { c.HTTP.Addr = "flag:3" }
	c, err := config.Load(file, env, flagAddr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"storage.driver (default)", c.Storage.Driver, "filesystem"},
		{"log.level (file over default)", c.Log.Level, "warn"},
		{"log.format (env over file)", c.Log.Format, "text"},
		{"http.idleTimeout (env over file)", c.HTTP.IdleTimeout, 2 * time.Minute},
		{"http.addr (flag over env over file)", c.HTTP.Addr, "flag:3"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.key, tc.got, tc.want)
		}
	}

	// Overrides are validated too.
	_, err = config.Load(file, env, func(c *config.Config) { c.HTTP.Addr = "nohost" })
	if err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Errorf("invalid override: err = %v, want one naming http.addr", err)
	}
}

// TestYAMLOnlyKeys: a list of rules has no environment variable, says so,
// and a variable named after it is reported as unknown.
func TestYAMLOnlyKeys(t *testing.T) {
	if got, want := config.YAMLOnlyKeys(), []string{"gc.retention", "proxy.upstreams"}; !reflect.DeepEqual(got, want) {
		t.Errorf("YAMLOnlyKeys() = %q, want %q", got, want)
	}
	for _, v := range config.EnvVars() {
		if strings.HasPrefix(v.Key, "gc.retention") {
			t.Errorf("EnvVars lists %s", v.Key)
		}
	}
	if got := config.UnknownEnv([]string{"BERTH_GC_RETENTION=x"}); !reflect.DeepEqual(got, []string{"BERTH_GC_RETENTION"}) {
		t.Errorf("UnknownEnv = %q, want BERTH_GC_RETENTION reported", got)
	}
}

// TestRetentionLoaded: rules decode into their fields, in order.
func TestRetentionLoaded(t *testing.T) {
	c, err := config.Load("testdata/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []config.RetentionRule{
		{Repositories: "ci/**", KeepLast: 10, OlderThan: 720 * time.Hour},
		{Repositories: "team-?/*", KeepTags: []string{"latest", `v\d+\.\d+\.\d+`}, OlderThan: 2160 * time.Hour},
		{Repositories: "**", KeepLast: 50},
	}
	if !reflect.DeepEqual(c.GC.Retention, want) {
		t.Errorf("gc.retention = %+v, want %+v", c.GC.Retention, want)
	}
}

func TestUnknownEnv(t *testing.T) {
	got := config.UnknownEnv([]string{
		"HOME=/root", "BERTH_HTTP_ADDR=:1", "BERTH_HTTP_ADR=:1", "BERTH_LOG_LEVEL=x",
		"BERTH_STORAGE_ROOT=/x", "BERTH_HTTP_ADR=again", "XBERTH_LOG=1", "BERTH_=",
	})
	want := []string{"BERTH_", "BERTH_HTTP_ADR", "BERTH_STORAGE_ROOT"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UnknownEnv = %q, want %q", got, want)
	}
}

func TestSlogLevel(t *testing.T) {
	for _, level := range []string{"debug", "info", "warn", "error"} {
		got := config.Log{Level: level}.SlogLevel().String()
		if !strings.EqualFold(got, level) {
			t.Errorf("SlogLevel(%q) = %s", level, got)
		}
	}
}

// TestSecretsNotEchoed: no error message quotes a secret key's value,
// whichever way it arrived.
func TestSecretsNotEchoed(t *testing.T) {
	const secret = "hunter2-do-not-print"
	for name, load := range map[string]func() error{
		"file, key alone": func() error {
			_, err := config.Load(writeFile(t, s3yaml("secretKey: "+secret)), nil)
			return err
		},
		"environment, key alone, other errors": func() error {
			_, err := config.Load("", mapEnv(map[string]string{
				"BERTH_STORAGE_DRIVER": "s3", "BERTH_STORAGE_S3_SECRETKEY": secret, "BERTH_STORAGE_S3_ENDPOINT": "x",
			}))
			return err
		},
		"endpoint with userinfo and a bad scheme": func() error {
			_, err := config.Load(writeFile(t, s3yaml("endpoint: 'ftp://ak:"+secret+"@minio:9000'")), nil)
			return err
		},
		"unparsable endpoint with userinfo": func() error {
			_, err := config.Load(writeFile(t, s3yaml("endpoint: 'http://ak:"+secret+"@[::1'")), nil)
			return err
		},
		"endpoint with userinfo": func() error {
			_, err := config.Load(writeFile(t, s3yaml("endpoint: 'http://ak:"+secret+"@minio:9000'")), nil)
			return err
		},
	} {
		err := load()
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error quotes the secret: %v", name, err)
		}
	}
}

// TestRedacted: Redacted masks the secret key when set, leaves it empty when
// unset, touches nothing else and does not change the original.
func TestRedacted(t *testing.T) {
	c, err := config.Load("testdata/full.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if r.Storage.S3.SecretKey != config.RedactedSecret {
		t.Errorf("Redacted secretKey = %q, want %q", r.Storage.S3.SecretKey, config.RedactedSecret)
	}
	if c.Storage.S3.SecretKey != "example-secret" {
		t.Errorf("Redacted changed the original: secretKey = %q", c.Storage.S3.SecretKey)
	}
	if r.Proxy.Upstreams[1].Password != config.RedactedSecret || c.Proxy.Upstreams[1].Password != "upstream-secret" {
		t.Errorf("upstream password: redacted %q, original %q", r.Proxy.Upstreams[1].Password, c.Proxy.Upstreams[1].Password)
	}
	unmasked := r
	unmasked.Storage.S3.SecretKey = c.Storage.S3.SecretKey
	unmasked.Proxy.Upstreams = slices.Clone(r.Proxy.Upstreams)
	unmasked.Proxy.Upstreams[1].Password = c.Proxy.Upstreams[1].Password
	if !reflect.DeepEqual(unmasked, *c) {
		t.Errorf("Redacted changed more than the secret:\n got %+v\nwant %+v", unmasked, *c)
	}
	var out bytes.Buffer
	if err := r.WriteYAML(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "example-secret") || !strings.Contains(out.String(), "secretKey: <redacted>") ||
		strings.Contains(out.String(), "upstream-secret") {
		t.Errorf("redacted dump:\n%s", out.String())
	}
	if d := config.Default(); d.Redacted().Storage.S3.SecretKey != "" {
		t.Errorf("an unset secret is shown as %q, want empty", d.Redacted().Storage.S3.SecretKey)
	}
}

// s3yaml is a config with the s3 driver, a bucket, and the lines given
// (indented as keys of storage.s3).
func s3yaml(lines string) string {
	return "storage:\n  driver: s3\n  s3:\n    bucket: b\n    " + lines + "\n"
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestAuthValidation checks the rules of the auth section, each error naming its key and fix.
func TestAuthValidation(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string // "" for valid
	}{
		{"none on loopback", "auth:\n  mode: none\n", ""},
		{"none on localhost", "http:\n  addr: localhost:5000\n", ""},
		{"none on every interface", "http:\n  addr: \":5000\"\n",
			`auth.mode: none on ":5000" serves everyone on the network: set auth.mode to htpasswd or token, listen on a loopback address, or set auth.allowInsecureNone: true`},
		{"none on a public address", "http:\n  addr: 192.0.2.1:5000\n", "auth.allowInsecureNone: true"},
		{"none allowed explicitly", "http:\n  addr: \":5000\"\nauth:\n  allowInsecureNone: true\n", ""},
		{"unknown mode", "auth:\n  mode: ldap\n", `auth.mode: "ldap" is not none, htpasswd or token`},
		{"htpasswd without file", "auth:\n  mode: htpasswd\n", "auth.htpasswd: required with auth.mode htpasswd"},
		{"htpasswd", "http:\n  addr: \":5000\"\nauth:\n  mode: htpasswd\n  htpasswd: h\n", ""},
		{"issuer without htpasswd and policy", "auth:\n  mode: token\n",
			"auth.htpasswd: required with the built-in issuer (auth.issuer.enabled); auth.issuer.policy: required with the built-in issuer"},
		{"issuer", "auth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n", ""},
		{"issuer ttl", "auth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n    ttl: 30s\n", "auth.issuer.ttl: 30s is below the minimum 1m0s"},
		{"refresh ttl below ttl", "auth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n    ttl: 2h\n    refreshTTL: 1h\n",
			"auth.issuer.refreshTTL: 1h0m0s is below auth.issuer.ttl (2h0m0s)"},
		{"refresh ttl equal to ttl", "auth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n    ttl: 1h\n    refreshTTL: 1h\n", ""},
		{"refresh ttl of a year", "auth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n    refreshTTL: 8760h\n", ""},
		{"realm not derivable", "http:\n  addr: \":5000\"\nauth:\n  mode: token\n  htpasswd: h\n  issuer:\n    policy: p\n",
			`auth.token.realm: cannot be derived from http.addr ":5000"`},
		{"realm set", "http:\n  addr: \":5000\"\nauth:\n  mode: token\n  htpasswd: h\n  token:\n    realm: https://r/auth/token\n  issuer:\n    policy: p\n", ""},
		{"external issuer without keys", "auth:\n  mode: token\n  issuer:\n    enabled: false\n",
			"auth.token.realm: required when auth.issuer.enabled is false: the URL of the token endpoint; auth.token: set jwks or rootCertBundle"},
		{"external issuer", "auth:\n  mode: token\n  token:\n    realm: https://r/auth/token\n    jwks: k\n  issuer:\n    enabled: false\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(writeFile(t, tc.yaml), nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTokenRealm(t *testing.T) {
	c := config.Default()
	if got, want := c.TokenRealm(), "http://127.0.0.1:5000/auth/token"; got != want {
		t.Errorf("derived realm = %q, want %q", got, want)
	}
	c.HTTP.TLS = config.TLS{Certificate: "c", Key: "k"}
	if got, want := c.TokenRealm(), "https://127.0.0.1:5000/auth/token"; got != want {
		t.Errorf("derived realm with TLS = %q, want %q", got, want)
	}
	c.Auth.Token.Realm = "https://r.example/auth/token"
	if got := c.TokenRealm(); got != c.Auth.Token.Realm {
		t.Errorf("realm = %q, want the configured one", got)
	}
}

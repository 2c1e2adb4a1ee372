package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/berth-registry/berth/runner/pull"
)

// CredentialSource says where an upstream's credentials come from: at most
// one of Password, PasswordFile and DockerConfig is set.
type CredentialSource struct {
	Username     string
	Password     string
	PasswordFile string // a file holding the password or access token
	DockerConfig string // a docker config.json with credentials for the upstream's host
}

// LoadCredentials returns the credentials src names for the upstream at
// upstreamURL, served under prefix (Docker Hub's credentials are looked up
// under docker.io, as docker logs in to it). Errors never quote a secret.
func LoadCredentials(src CredentialSource, upstreamURL, prefix string) (pull.Credentials, error) {
	switch {
	case src.PasswordFile != "":
		b, err := os.ReadFile(src.PasswordFile)
		if err != nil {
			return pull.Credentials{}, fmt.Errorf("passwordFile: %w", err)
		}
		return pull.Credentials{Username: src.Username, Password: strings.TrimRight(string(b), "\r\n")}, nil
	case src.DockerConfig != "":
		dc, err := pull.LoadDockerConfig(src.DockerConfig)
		if err != nil {
			return pull.Credentials{}, fmt.Errorf("dockerConfig: %w", err)
		}
		pu, err := url.Parse(upstreamURL)
		if err != nil {
			return pull.Credentials{}, err
		}
		host := pu.Host
		if prefix == dockerHub {
			host = dockerHub
		}
		return dc.Credentials(host)
	}
	return pull.Credentials{Username: src.Username, Password: src.Password}, nil
}

// TLSTransport returns a transport trusting the PEM certificate
// authorities in caFile besides the system's, or any certificate with
// insecureSkipVerify; nil (the default transport) with neither.
func TLSTransport(caFile string, insecureSkipVerify bool) (http.RoundTripper, error) {
	if caFile == "" && !insecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify} //nolint:gosec // the operator asked for it
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	return t, nil
}

// UpstreamOf returns the name of the upstream whose cache repository repo
// is, "" for a local repository (and for a nil Cache).
func (c *Cache) UpstreamOf(repo string) string {
	if c == nil {
		return ""
	}
	for _, u := range c.upstreams {
		if strings.HasPrefix(repo, u.Prefix+"/") {
			return u.Name
		}
	}
	return ""
}

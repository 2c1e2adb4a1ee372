package config

// UI configures the web UI that `berth serve` serves at /ui/.
type UI struct {
	// Enabled serves the web UI at /ui/. Without auth everyone may use
	// it; under token auth with the built-in issuer visitors sign in with
	// its users and see and do what its policy grants them; under
	// htpasswd auth or an external token issuer it stays off. Default: true.
	Enabled bool `yaml:"enabled"`
}

func defaultUI() UI { return UI{Enabled: true} }

package config

// UI configures the web UI that `berth serve` serves at /ui/.
type UI struct {
	// Enabled serves the web UI at /ui/. Under auth (mode htpasswd or
	// token) it is not served yet: its sign-in is still to come.
	// Default: true.
	Enabled bool `yaml:"enabled"`
}

func defaultUI() UI { return UI{Enabled: true} }

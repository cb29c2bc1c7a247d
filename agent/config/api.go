package config

// API configures the local HTTP server: health, metrics, status, dashboard.
type API struct {
	// Listen is the address; default 127.0.0.1:8080. Any other address
	// requires a token or client certificates.
	Listen string `yaml:"listen"`
	// Disabled turns the server off.
	Disabled bool `yaml:"disabled"`
}

// validateAPI checks the api section.
func (c *Config) validateAPI(add func(path, format string, args ...any)) {}

// setAPIDefaults fills in the api section's defaults.
func (c *Config) setAPIDefaults() {
	if c.API.Listen == "" {
		c.API.Listen = "127.0.0.1:8080"
	}
}

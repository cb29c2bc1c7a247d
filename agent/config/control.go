package config

// Control configures remote configuration over MQTT (DESIGN.md "Remote
// configuration over MQTT"). Absent or disabled: the agent runs its local
// config only.
type Control struct {
	Enabled bool   `yaml:"enabled"`
	URL     string `yaml:"url"` // broker, e.g. tcp://127.0.0.1:1883
}

// validateControl checks the control section.
func (c *Config) validateControl(add func(path, format string, args ...any)) {}

// setControlDefaults fills in the control section's defaults.
func (c *Config) setControlDefaults() {}

package config

import (
	"fmt"
	"net/url"

	"github.com/sluiceio/sluice/uplink"
)

// Uplink is one upstream destination.
type Uplink struct {
	Name string      `yaml:"name"`
	NATS *NATSUplink `yaml:"nats"`
}

// NATSUplink publishes to NATS, with JetStream acks where a stream covers
// the subject.
type NATSUplink struct {
	URL         string `yaml:"url"`
	Subject     string `yaml:"subject"` // template: {gateway}, {rule}
	MaxInFlight int    `yaml:"max_in_flight"`
	BatchSize   int    `yaml:"batch_size"`
}

// validateUplinks checks the uplinks section and returns the names.
func (c *Config) validateUplinks(add func(path, format string, args ...any), checkName func(path, name string, seen map[string]bool)) map[string]bool {
	uplinks := map[string]bool{}
	for i, u := range c.Uplinks {
		p := fmt.Sprintf("uplinks[%d]", i)
		checkName(p+".name", u.Name, uplinks)
		if u.NATS == nil {
			add(p, "needs a destination: nats")
			continue
		}
		if pu, err := url.Parse(u.NATS.URL); err != nil || pu.Host == "" {
			add(p+".nats.url", "%q is not a server URL like nats://127.0.0.1:4222", u.NATS.URL)
		}
		if u.NATS.Subject != "" {
			if err := checkSubject(u.NATS.Subject); err != nil {
				add(p+".nats.subject", "%v", err)
			}
		}
	}
	if len(c.Uplinks) == 0 {
		add("uplinks", "needs at least one uplink")
	}

	return uplinks
}

func checkSubject(s string) error {
	_, err := uplink.ParseSubject(s)
	return err
}

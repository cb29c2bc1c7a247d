package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/buffer"
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate returns every error in c, each with its field path. Lines are
// filled in by Parse.
func (c *Config) Validate() Errors {
	return c.validate(strconv.IntSize)
}

// validate checks c for a machine whose words have wordBits bits.
func (c *Config) validate(wordBits int) Errors {
	var errs Errors
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	checkName := func(path, name string, seen map[string]bool) {
		switch {
		case name == "":
			add(path, "%v", errRequired)
		case !namePattern.MatchString(name):
			add(path, "%q: use letters, digits, _ and - (at most 64)", name)
		case seen[name]:
			add(path, "%q is used twice", name)
		}
		seen[name] = true
	}
	checkName("gateway", c.Gateway, map[string]bool{})

	inputs := map[string]bool{}
	for i, in := range c.Inputs {
		p := fmt.Sprintf("inputs[%d]", i)
		checkName(p+".name", in.Name, inputs)
		validateInputSource(p, &in, add)
		if in.HTTP != nil && c.API.Disabled {
			add(p+".http", "needs the local API (api.disabled is true)")
		}
		if in.MQTT == nil {
			continue
		}
		m := in.MQTT
		if u, err := url.Parse(m.URL); err != nil || u.Host == "" {
			add(p+".mqtt.url", "%q is not a broker URL like tcp://127.0.0.1:1883", m.URL)
		} else if !slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts"}, u.Scheme) {
			add(p+".mqtt.url", "scheme %q is not supported (tcp, mqtt; ssl, tls, mqtts for TLS)", u.Scheme)
		}
		if (m.CertFile == "") != (m.KeyFile == "") {
			add(p+".mqtt.cert_file", "cert_file and key_file go together")
		}
		if len(m.Topics) == 0 {
			add(p+".mqtt.topics", "needs at least one topic filter")
		}
		for j, t := range m.Topics {
			if err := checkTopicFilter(t); err != nil {
				add(fmt.Sprintf("%s.mqtt.topics[%d]", p, j), "%q: %v", t, err)
			}
		}
		if m.QoS != nil && (*m.QoS < 0 || *m.QoS > 2) {
			add(p+".mqtt.qos", "must be 0, 1 or 2, got %d", *m.QoS)
		}
		if m.ReadCoalesce != nil && (*m.ReadCoalesce < 0 || *m.ReadCoalesce > 100*time.Millisecond) {
			add(p+".mqtt.read_coalesce", "must be between 0 and 100ms, got %s", *m.ReadCoalesce)
		}
		if m.MaxAckDelay != nil && (*m.MaxAckDelay < 0 || *m.MaxAckDelay > 100*time.Millisecond) {
			add(p+".mqtt.max_ack_delay", "must be between 0 and 100ms, got %s", *m.MaxAckDelay)
		}
		if m.PasswordFile != "" && m.PasswordEnv != "" {
			add(p+".mqtt.password_file", "set password_file or password_env, not both")
		}
	}

	uplinks := c.validateUplinks(add, checkName)
	if _, err := buffer.ParsePolicy(c.Buffer.Policy); err != nil {
		add("buffer.policy", "%v", err)
	}
	if c.Buffer.MaxRecords < 0 {
		add("buffer.max_records", "must not be negative")
	}
	if c.Limits.Procs < 0 {
		add("limits.procs", "must not be negative (0: sized by load), got %d", c.Limits.Procs)
	}
	if c.Buffer.MaxAge < 0 {
		add("buffer.max_age", "must not be negative")
	}
	if wordBits == 32 && c.Buffer.MaxBytes > maxBytes32 {
		add("buffer.max_bytes", "%d MiB is more than a 32-bit gateway can memory-map (bbolt maps the whole file): at most %d MiB here",
			c.Buffer.MaxBytes>>20, maxBytes32>>20)
	}

	if c.Broker != nil && !broker.Built {
		add("broker", "this sluice has no built-in broker: build it with the tag broker (make build TAGS=broker) or use an external broker such as mosquitto")
	}
	c.validateModels(add)
	c.validateRules(add, checkName, inputs, uplinks)
	c.validateAPI(add)
	c.validateControl(add)
	errs = append(errs, c.ValidateDeadLetterRoutes()...)
	return errs
}

func checkTopicFilter(t string) error {
	if t == "" {
		return errors.New("empty filter")
	}
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '#':
			if i != len(t)-1 || (i > 0 && t[i-1] != '/') {
				return errors.New("# must be the last level on its own")
			}
		case '+':
			if (i > 0 && t[i-1] != '/') || (i < len(t)-1 && t[i+1] != '/') {
				return errors.New("+ must fill a whole level")
			}
		}
	}
	return nil
}

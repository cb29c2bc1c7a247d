// Package config is the agent's configuration file: its YAML form, strict
// decoding (unknown keys are errors) and validation that names the line and
// field path of every error. Other packages never see YAML: the agent turns a
// Config into constructor calls.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/agent/ingest"
)

// Config is the whole agent configuration.
type Config struct {
	Gateway string            `yaml:"gateway"`  // this gateway's id; in every envelope
	DataDir string            `yaml:"data_dir"` // buffer and state
	Tags    map[string]string `yaml:"tags"`     // static tags added to every output
	Broker  *Broker           `yaml:"broker"`   // optional built-in MQTT broker
	Inputs  []Input           `yaml:"inputs"`
	Rules   []Rule            `yaml:"rules"`
	Models  map[string]any    `yaml:"models"` // for predict and classify: name → rules/ml's JSON form (models.go)
	Uplinks []Uplink          `yaml:"uplinks"`
	Buffer  Buffer            `yaml:"buffer"`
	Log     Log               `yaml:"log"`
	Limits  Limits            `yaml:"limits"`
	API     API               `yaml:"api"`     // local HTTP server (api.go)
	Control Control           `yaml:"control"` // remote configuration over MQTT (control.go)
	// ShutdownTimeout bounds how long a stopping agent keeps delivering
	// what is buffered (default 5s); the rest waits for the next start.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	badModels map[string]bool // models that failed to load (validateModels)
}

// Limits size the agent for small devices.
type Limits struct {
	// Memory is the Go runtime's soft memory limit (GOMEMLIMIT); default
	// DefaultMemoryLimit, sized for a 256 MB gateway. The environment
	// variable GOMEMLIMIT, when set, wins.
	Memory ByteSize `yaml:"memory"`
	// Procs fixes GOMAXPROCS; 0 (the default) runs the Go scheduler on one
	// CPU while the agent is lightly loaded and on all of them when it is
	// busy (agent/procs). The environment variable GOMAXPROCS, when set,
	// wins.
	Procs int `yaml:"procs"`
}

// DefaultMemoryLimit leaves most of a 256 MB gateway to everything else.
const DefaultMemoryLimit = 64 << 20

// Broker runs an MQTT broker inside the agent, for gateways without one.
type Broker struct {
	Listen string `yaml:"listen"` // default 127.0.0.1:1883
}

// Input is one source of records.
type Input struct {
	Name   string       `yaml:"name"`
	MQTT   *MQTTInput   `yaml:"mqtt"` // one source: mqtt or log (input.go)
	Log    *LogInput    `yaml:"log"`
	HTTP   *HTTPInput   `yaml:"http"`
	Health *HealthInput `yaml:"health"`

	// Format decodes payloads: json (default), csv, logfmt, regex, influx,
	// number; the settings below belong to some of them.
	Format          string     `yaml:"format"`
	CSV             *CSVFormat `yaml:"csv"`
	Pattern         string     `yaml:"pattern"`          // regex: named groups become fields
	NumberField     string     `yaml:"number_field"`     // number: the field's name (default value)
	InfluxPrecision string     `yaml:"influx_precision"` // influx: ns (default), us, ms, s

	// The input stage after decoding (input.go): topic segments become
	// fields, the schema is checked, tags are added. Failures are dead letters.
	Topic  string            `yaml:"topic"` // e.g. sensors/{site}/{device}/telemetry
	Schema []SchemaField     `yaml:"schema"`
	Fields map[string]string `yaml:"fields"` // static fields added to every record

	// Normalization, enrichment and dead-letter routing (input_stage.go).
	InputStage `yaml:",inline"`
}

// MQTTInput subscribes to topics of an MQTT broker.
type MQTTInput struct {
	URL          string    `yaml:"url"`       // tcp://host:1883
	Topics       []string  `yaml:"topics"`    // filters, + and # allowed
	QoS          *int      `yaml:"qos"`       // default 1
	ClientID     string    `yaml:"client_id"` // default sluice-<gateway>-<input>
	Username     string    `yaml:"username"`
	PasswordFile string    `yaml:"password_file"` // secrets come from files or env
	PasswordEnv  string    `yaml:"password_env"`
	CAFile       string    `yaml:"ca_file"`   // TLS (ssl://, tls://, mqtts://): CA of the broker; default system roots
	CertFile     string    `yaml:"cert_file"` // TLS client certificate and its key
	KeyFile      string    `yaml:"key_file"`
	ReadCoalesce *Duration `yaml:"read_coalesce"` // wait before a socket read; 0 turns it off
	// QuickAck ACKs what the broker sent at once while reads are coalesced
	// (Linux TCP_QUICKACK): a broker with Nagle on (mosquitto's default)
	// then stops holding messages for our delayed ACK, for lower latency
	// at a higher CPU cost (README, "Latency").
	QuickAck bool `yaml:"quick_ack"`
	// MaxAckDelay bounds, while reads are coalesced, how long what the
	// broker sent goes without a TCP ACK: the agent sends the ACK Linux is
	// delaying (up to 40 ms, while a Nagle broker holds its next messages)
	// this long after a read; 0 leaves it to the kernel (README, "Latency").
	MaxAckDelay *Duration     `yaml:"max_ack_delay"`
	MaxPayload  int           `yaml:"max_payload"` // bytes; larger payloads are dead letters
	KeepAlive   time.Duration `yaml:"keep_alive"`
	MaxInflight *int          `yaml:"max_inflight"` // unacked QoS 1/2 messages; default DefaultMaxInflight, 0: no cap
}

// Buffer configures the store-and-forward file and group commit.
type Buffer struct {
	Path               string        `yaml:"path"`                // default <data_dir>/buffer.db
	CommitInterval     time.Duration `yaml:"commit_interval"`     // longest wait of an input for its commit
	CommitMaxRecords   int           `yaml:"commit_max_records"`  // commit once this many inputs wait
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"` // window state of QoS 0 inputs
	NoSync             bool          `yaml:"no_sync"`             // benchmarks only
	MaxBytes           ByteSize      `yaml:"max_bytes"`           // cap on queued outputs; default 256MiB
	MaxRecords         int64         `yaml:"max_records"`         // cap on queued outputs; 0: none
	MaxAge             time.Duration `yaml:"max_age"`             // older outputs are dropped; 0: never
	Policy             string        `yaml:"policy"`              // drop_oldest (default), drop_newest, backpressure
}

// DefaultMaxBytes caps the buffer when the config does not: days of
// summaries for a typical gateway, and safe for 32-bit memory maps.
const DefaultMaxBytes = 256 << 20

// maxBytes32 is the largest buffer a 32-bit gateway can map: bbolt maps the
// whole file into an address space of 2-3 GiB shared with everything else,
// and grows the map by doubling.
const maxBytes32 = 1 << 30

// ByteSize is a size in bytes, written as a number or with a unit: 512KiB,
// 64MiB, 1GiB (or KB, MB, GB as powers of 1000).
type ByteSize int64

// UnmarshalYAML reads a number or a number with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize reads "64MiB", "1GB" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size like 64MiB", s)
	}
	return ByteSize(n * mult), nil
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Duration is a time.Duration that may be set to 0 explicitly (nil: default).
type Duration = time.Duration

// Defaults.
const (
	DefaultCommitInterval     = 10 * time.Millisecond
	DefaultCommitMaxRecords   = 2000
	DefaultCheckpointInterval = time.Second
	DefaultReadCoalesce       = time.Millisecond
	// DefaultMaxAckDelay is chosen by W1 and W1a at 5k msg/s (README,
	// "Latency"): 7 ms cost 0.34–0.36× of the floor's CPU and a p99 of
	// 21.0 ms; 5 ms 0.38–0.44× and 19.4–20.2 ms.
	DefaultMaxAckDelay = 7 * time.Millisecond
	DefaultMaxPayload  = 256 << 10
	DefaultSubject     = "sluice.{gateway}.{rule}"
)

// Load reads, decodes strictly and validates the file at path, and fills in
// defaults. Errors name the file, the line and the field.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a config document.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded above; only for line numbers
	if errs := c.Validate(); len(errs) > 0 {
		for i := range errs {
			errs[i].Line = lineOf(&root, errs[i].Path)
		}
		return nil, errs
	}
	c.setDefaults()
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Buffer.Path == "" {
		c.Buffer.Path = filepath.Join(c.DataDir, "buffer.db")
	}
	if c.Buffer.CommitInterval <= 0 {
		c.Buffer.CommitInterval = DefaultCommitInterval
	}
	if c.Buffer.CommitMaxRecords <= 0 {
		c.Buffer.CommitMaxRecords = DefaultCommitMaxRecords
	}
	c.setAPIDefaults()
	c.setControlDefaults()
	if c.Limits.Memory == 0 {
		c.Limits.Memory = DefaultMemoryLimit
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.Buffer.MaxBytes == 0 {
		c.Buffer.MaxBytes = DefaultMaxBytes
	}
	if c.Buffer.Policy == "" {
		c.Buffer.Policy = "drop_oldest"
	}
	if c.Buffer.CheckpointInterval <= 0 {
		c.Buffer.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Broker != nil && c.Broker.Listen == "" {
		c.Broker.Listen = "127.0.0.1:1883"
	}
	for i := range c.Inputs {
		in := &c.Inputs[i]
		if in.Format == "" {
			in.Format = "json"
		}
		if in.Log != nil {
			setLogDefaults(in.Log)
		}
		if h := in.HTTP; h != nil {
			if h.MaxBody <= 0 {
				h.MaxBody = ingest.DefaultHTTPMaxBody
			}
			if h.AckTimeout <= 0 {
				h.AckTimeout = 30 * time.Second
			}
		}
		if h := in.Health; h != nil {
			if h.Interval <= 0 {
				h.Interval = 10 * time.Second
			}
			if h.DiskPath == "" {
				h.DiskPath = c.DataDir
			}
		}
		if m := in.MQTT; m != nil {
			if m.QoS == nil {
				q := 1
				m.QoS = &q
			}
			if m.ClientID == "" {
				m.ClientID = "sluice-" + c.Gateway + "-" + in.Name
			}
			if m.ReadCoalesce == nil {
				d := DefaultReadCoalesce
				m.ReadCoalesce = &d
			}
			if m.MaxAckDelay == nil {
				d := DefaultMaxAckDelay
				m.MaxAckDelay = &d
			}
			if m.MaxPayload <= 0 {
				m.MaxPayload = DefaultMaxPayload
			}
			if m.KeepAlive <= 0 {
				m.KeepAlive = 30 * time.Second
			}
		}
	}
	for i := range c.Uplinks {
		if n := c.Uplinks[i].NATS; n != nil {
			if n.Subject == "" {
				n.Subject = DefaultSubject
			}
			if n.MaxInFlight <= 0 {
				n.MaxInFlight = 256
			}
			if n.BatchSize <= 0 {
				n.BatchSize = 500
			}
		}
	}
}

// FieldError is one invalid field.
type FieldError struct {
	Path string // rules[0].where
	Line int    // in the file, 0 when unknown
	Msg  string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Errors is every error found in a config.
type Errors []FieldError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// lineOf finds the line of a field path (a.b[2].c) in a YAML tree.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range splitPath(path) {
		var next *yaml.Node
		switch {
		case part.index >= 0 && n.Kind == yaml.SequenceNode && part.index < len(n.Content):
			next = n.Content[part.index]
		case part.index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part.name {
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n, line = next, next.Line
	}
	return line
}

type pathPart struct {
	name  string
	index int
}

func splitPath(path string) []pathPart {
	var parts []pathPart
	for _, seg := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			parts = append(parts, pathPart{name: name, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			var i int
			fmt.Sscanf(num, "%d", &i)
			parts = append(parts, pathPart{index: i})
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return parts
}

var errRequired = errors.New("is required")

package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sluiceio/sluice/agent/ingest"
)

// LogInput tails log files: one record per line (or multiline record).
type LogInput struct {
	Paths         []string      `yaml:"paths"`          // globs; new matches are picked up while running
	Start         string        `yaml:"start"`          // beginning (default) or end, for files seen the first time
	Multiline     string        `yaml:"multiline"`      // lines matching this regexp continue the previous record
	MultilineWait time.Duration `yaml:"multiline_wait"` // default 1s
	MaxLineBytes  int           `yaml:"max_line_bytes"` // longer records are dead letters; default 64KiB
	PollInterval  time.Duration `yaml:"poll_interval"`  // fallback to file events; default 1s
	RotateWait    time.Duration `yaml:"rotate_wait"`    // how long a rotated-away file is still read; default 5s
}

// HTTPInput accepts POST /ingest/<input name> on the local API's listener:
// one JSON object or NDJSON; the 202 comes after the commit.
type HTTPInput struct {
	MaxBody    ByteSize      `yaml:"max_body"`    // default 1MiB; larger bodies get 413
	AckTimeout time.Duration `yaml:"ack_timeout"` // default 30s; then 503
}

// HealthInput emits the gateway's own health (CPU, memory, disk,
// temperature) as a record every interval.
type HealthInput struct {
	Interval time.Duration `yaml:"interval"`  // default 10s
	DiskPath string        `yaml:"disk_path"` // default the data dir
}

// SchemaField checks one field of an input's records.
type SchemaField struct {
	Name     string   `yaml:"name"`
	Required bool     `yaml:"required"`
	Type     string   `yaml:"type"` // number, string, bool
	Min      *float64 `yaml:"min"`
	Max      *float64 `yaml:"max"`
	Enum     []string `yaml:"enum"`
}

// StageOptions returns the input stage's settings, or nil when it has none;
// gateway tags, when asked for, carry an empty gateway (the agent uses
// StageOptionsFor).
func (in *Input) StageOptions() *ingest.StageOptions { return in.StageOptionsFor("", nil) }

// CSVFormat configures the csv decoder.
type CSVFormat struct {
	Header    []string `yaml:"header"`
	Delimiter string   `yaml:"delimiter"` // one character; default ","
}

// DecoderOptions returns the input stage's decoder settings.
func (in *Input) DecoderOptions() ingest.DecoderOptions {
	o := ingest.DecoderOptions{Pattern: in.Pattern, Field: in.NumberField, Precision: in.InfluxPrecision}
	if in.CSV != nil {
		o.Header = in.CSV.Header
		if in.CSV.Delimiter != "" {
			o.Delimiter = in.CSV.Delimiter[0]
		}
	}
	return o
}

// validateInputSource checks the source of one input (exactly one of mqtt,
// log, http and health), its format and its stage.
func validateInputSource(p string, in *Input, add func(path, format string, args ...any)) {
	sources := 0
	for _, set := range []bool{in.MQTT != nil, in.Log != nil, in.HTTP != nil, in.Health != nil} {
		if set {
			sources++
		}
	}
	switch {
	case sources > 1:
		add(p, "set one source: mqtt, log, http or health")
	case sources == 0:
		add(p, "needs a source: mqtt, log, http or health")
	}
	if in.CSV != nil && len(in.CSV.Delimiter) > 1 {
		add(p+".csv.delimiter", "must be one character, got %q", in.CSV.Delimiter)
	}
	if _, err := ingest.NewDecoder(formatOr(in.Format), in.DecoderOptions()); err != nil {
		add(p+".format", "%v", err)
	}
	validateStage(p, in, add)
	if so := in.StageOptions(); so != nil {
		if _, err := ingest.NewStage(*so); err != nil {
			if field, ok := stageErrorPath(err); ok {
				add(p+field, "%v", err)
			}
		}
	}
	l := in.Log
	if l == nil {
		return
	}
	if len(l.Paths) == 0 {
		add(p+".log.paths", "needs at least one path or glob")
	}
	for j, g := range l.Paths {
		if _, err := filepath.Match(g, ""); err != nil {
			add(fmt.Sprintf("%s.log.paths[%d]", p, j), "%q: %v", g, err)
		}
	}
	if _, err := ingest.ParseStart(l.Start); err != nil {
		add(p+".log.start", "%v", err)
	}
	if l.Multiline != "" {
		if _, err := regexp.Compile(l.Multiline); err != nil {
			add(p+".log.multiline", "%v", err)
		}
	}
	if l.MaxLineBytes < 0 {
		add(p+".log.max_line_bytes", "must not be negative")
	}
}

func formatOr(f string) string {
	if f == "" {
		return "json"
	}
	return f
}

// setLogDefaults fills in a log input's defaults.
func setLogDefaults(l *LogInput) {
	if l.MultilineWait <= 0 {
		l.MultilineWait = time.Second
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = 64 << 10
	}
	if l.PollInterval <= 0 {
		l.PollInterval = time.Second
	}
	if l.RotateWait <= 0 {
		l.RotateWait = 5 * time.Second
	}
}

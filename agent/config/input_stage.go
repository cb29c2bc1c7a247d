package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/rules"
)

// InputStage is the part of an input's stage after decoding that rewrites
// and enriches records, and where its dead letters go. It is inline in
// Input: its keys sit beside topic, schema and fields. The order of the
// steps is: topic, rename, coerce, units, event_time, schema, lookup,
// gateway_tags, fields.
type InputStage struct {
	Rename      map[string]string `yaml:"rename"`       // field → new name
	Coerce      map[string]string `yaml:"coerce"`       // field → number, string or bool
	Units       map[string]string `yaml:"units"`        // field → conversion, e.g. F->C, psi->kPa
	EventTime   *InputEventTime   `yaml:"event_time"`   // the record's time from a field
	Lookup      *Lookup           `yaml:"lookup"`       // fields from a table keyed by a field
	GatewayTags bool              `yaml:"gateway_tags"` // add gateway (the id) and the config's tags as fields
	DeadLetters *DeadLetters      `yaml:"dead_letters"` // send dead letters upstream too
}

// InputEventTime reads a record's event time from a field.
type InputEventTime struct {
	Field  string `yaml:"field"`
	Format string `yaml:"format"` // auto (default), s, ms, us, ns, rfc3339
}

// Lookup adds the fields of the table row whose name is the key field's
// value (as text: 2 reads as "2").
type Lookup struct {
	Key    string                    `yaml:"key"`
	Table  map[string]map[string]any `yaml:"table"`   // row → field → number, string or bool
	OnMiss string                    `yaml:"on_miss"` // keep (default) or dead_letter
}

// DeadLetters routes an input's dead letters to an uplink as well: each is
// committed to the buffer like an output of rule DeadLetterRule (so the
// uplink's subject or topic template names it) with the reason and the
// payload.
type DeadLetters struct {
	To string `yaml:"to"` // uplink name
}

// DeadLetterRule is the rule name dead letters carry upstream.
const DeadLetterRule = "_deadletters"

// DefaultMaxInflight is an MQTT input's cap on unacked messages when the
// config sets none: far above a commit's worth at 100k messages/s (so it
// does not slow the pipeline) and a bound on memory when commits stall.
const DefaultMaxInflight = 10000

// Inflight returns the input's cap on unacked messages (0: none).
func (m *MQTTInput) Inflight() int {
	if m.MaxInflight == nil {
		return DefaultMaxInflight
	}
	return *m.MaxInflight
}

// StageOptionsFor returns the input stage's settings with gateway tags from
// the gateway id and tags, or nil when the stage has nothing to do.
func (in *Input) StageOptionsFor(gateway string, tags map[string]string) *ingest.StageOptions {
	st := &in.InputStage
	if in.Topic == "" && len(in.Schema) == 0 && len(in.Fields) == 0 && len(st.Rename) == 0 && len(st.Coerce) == 0 &&
		len(st.Units) == 0 && st.EventTime == nil && st.Lookup == nil && !st.GatewayTags {
		return nil
	}
	o := &ingest.StageOptions{Topic: in.Topic, Tags: in.Fields, Rename: st.Rename, Coerce: st.Coerce, Units: st.Units}
	for _, f := range in.Schema {
		o.Schema = append(o.Schema, ingest.FieldSpec{Name: f.Name, Required: f.Required, Type: f.Type, Min: f.Min, Max: f.Max, Enum: f.Enum})
	}
	if e := st.EventTime; e != nil {
		format, _ := ingest.ParseTimeFormat(e.Format) // validated
		o.EventTime = &ingest.EventTime{Field: e.Field, Format: format}
	}
	if l := st.Lookup; l != nil {
		o.Lookup = &ingest.LookupOptions{Key: l.Key, OnMiss: l.OnMiss, Table: make(map[string][]rules.Field, len(l.Table))}
		for row, fields := range l.Table {
			fs := make([]rules.Field, 0, len(fields))
			for name, x := range fields {
				v, _ := ingest.ValueOf(x) // validated
				fs = append(fs, rules.Field{Name: name, Value: v})
			}
			o.Lookup.Table[row] = fs
		}
	}
	if st.GatewayTags {
		o.Gateway = map[string]string{"gateway": gateway}
		for k, v := range tags {
			o.Gateway[k] = v
		}
	}
	return o
}

// validateStage checks the input stage's settings, each error at its field.
func validateStage(p string, in *Input, add func(path, format string, args ...any)) {
	st := &in.InputStage
	targets := map[string]string{}
	for _, from := range slices.Sorted(maps.Keys(st.Rename)) {
		to := st.Rename[from]
		switch {
		case from == "" || to == "":
			add(p+".rename", "names must not be empty (%q: %q)", from, to)
		case targets[to] != "":
			add(p+".rename."+from, "%s and %s both become %s", targets[to], from, to)
		default:
			if _, chained := st.Rename[to]; chained {
				add(p+".rename."+from, "%s is renamed too; rename %s to its final name", to, from)
			}
		}
		targets[to] = from
	}
	for _, f := range slices.Sorted(maps.Keys(st.Coerce)) {
		switch k := st.Coerce[f]; k {
		case ingest.CoerceNumber, ingest.CoerceString, ingest.CoerceBool:
		default:
			add(p+".coerce."+f, "%q is not number, string or bool", k)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(st.Units)) {
		if _, err := ingest.ParseConversion(st.Units[f]); err != nil {
			add(p+".units."+f, "%v", err)
		}
	}
	if e := st.EventTime; e != nil {
		if e.Field == "" {
			add(p+".event_time.field", "%v", errRequired)
		}
		if _, err := ingest.ParseTimeFormat(e.Format); err != nil {
			add(p+".event_time.format", "%v", err)
		}
	}
	if l := st.Lookup; l != nil {
		if l.Key == "" {
			add(p+".lookup.key", "%v", errRequired)
		}
		if l.OnMiss != "" && l.OnMiss != ingest.MissKeep && l.OnMiss != ingest.MissDeadLetter {
			add(p+".lookup.on_miss", "%q is not keep or dead_letter", l.OnMiss)
		}
		if len(l.Table) == 0 {
			add(p+".lookup.table", "needs at least one row")
		}
		for _, row := range slices.Sorted(maps.Keys(l.Table)) {
			for _, name := range slices.Sorted(maps.Keys(l.Table[row])) {
				if _, err := ingest.ValueOf(l.Table[row][name]); err != nil {
					add(p+".lookup.table."+row+"."+name, "%v", err)
				}
			}
		}
	}
	if d := st.DeadLetters; d != nil && d.To == "" {
		add(p+".dead_letters.to", "%v: the name of an uplink", errRequired)
	}
	if m := in.MQTT; m != nil && m.MaxInflight != nil && *m.MaxInflight < 0 {
		add(p+".mqtt.max_inflight", "must not be negative (0: no cap), got %d", *m.MaxInflight)
	}
}

// stageErrorPath maps an error of ingest.NewStage to the field it is about;
// ok is false for the settings validateStage reports itself.
func stageErrorPath(err error) (field string, ok bool) {
	msg := err.Error()
	for _, key := range []string{"rename", "coerce", "units", "event_time", "lookup"} {
		if strings.HasPrefix(msg, key) {
			return "", false
		}
	}
	if strings.HasPrefix(msg, "topic") {
		return ".topic", true
	}
	return ".schema", true
}

// ValidateDeadLetterRoutes checks that each input's dead_letters.to names
// an uplink of c.
func (c *Config) ValidateDeadLetterRoutes() Errors {
	names := map[string]bool{}
	for _, u := range c.Uplinks {
		names[u.Name] = true
	}
	var errs Errors
	for i, in := range c.Inputs {
		if d := in.DeadLetters; d != nil && d.To != "" && !names[d.To] {
			errs = append(errs, FieldError{Path: fmt.Sprintf("inputs[%d].dead_letters.to", i), Msg: fmt.Sprintf("no uplink named %q", d.To)})
		}
	}
	return errs
}

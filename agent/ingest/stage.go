package ingest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/sluiceio/sluice/rules"
)

// Stage is what an input does to a decoded record before the rules, in this
// order: topic segments become fields (`sensors/{site}/{device}/telemetry`),
// fields are renamed, coerced to a type and converted between units, the
// event time is read from a field, the schema is checked, and the record is
// enriched from a lookup table, with gateway tags and with static fields. A
// record that fails is a dead letter with the error as its reason.
//
// Apply does not allocate on success: segment values are substrings of the
// topic, renames and conversions rewrite fields in place, and strings made by
// coercion share one scratch buffer reused per record (plans copy the strings
// they keep). A Stage is used by one goroutine (the pipeline's).
type Stage struct {
	topic     []topicPart
	renames   []rename
	coercions []coercion
	convs     []conversion
	eventTime *EventTime
	schema    []FieldSpec
	lookup    *lookup
	tags      []rules.Field // gateway tags, then static fields (which win)

	scratch []byte
}

// StageOptions configure a Stage.
type StageOptions struct {
	Topic     string            // pattern; {name} segments become fields
	Rename    map[string]string // field → new name; applied before everything below
	Coerce    map[string]string // field → number, string or bool
	Units     map[string]string // field → conversion such as "F->C" (ParseConversion)
	EventTime *EventTime        // the record's time from a field; nil: arrival time
	Schema    []FieldSpec       // checks, in order
	Lookup    *LookupOptions    // rows keyed by a field's value
	Gateway   map[string]string // gateway tags: the gateway id and its labels
	Tags      map[string]string // static fields added to every record
}

// FieldSpec checks one field.
type FieldSpec struct {
	Name     string
	Required bool
	Type     string   // number, string or bool; "" accepts any
	Min, Max *float64 // bounds for numbers
	Enum     []string // allowed strings
}

type topicPart struct {
	literal string
	field   string // set for {field}
}

// NewStage checks opts and builds the stage.
func NewStage(opts StageOptions) (*Stage, error) {
	s := &Stage{schema: opts.Schema, eventTime: opts.EventTime}
	if opts.Topic != "" {
		for _, seg := range strings.Split(opts.Topic, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				name := seg[1 : len(seg)-1]
				if name == "" {
					return nil, fmt.Errorf("topic %q: empty {} segment", opts.Topic)
				}
				s.topic = append(s.topic, topicPart{field: name})
				continue
			}
			if strings.ContainsAny(seg, "{}+#") {
				return nil, fmt.Errorf("topic %q: segment %q must be a literal or a whole {name}", opts.Topic, seg)
			}
			s.topic = append(s.topic, topicPart{literal: seg})
		}
	}
	for _, f := range opts.Schema {
		switch f.Type {
		case "", "number", "string", "bool":
		default:
			return nil, fmt.Errorf("schema %s: type %q is not number, string or bool", f.Name, f.Type)
		}
		if f.Name == "" {
			return nil, errors.New("schema: a field has no name")
		}
	}
	if err := s.normalization(opts); err != nil {
		return nil, err
	}
	if opts.Lookup != nil {
		l, err := newLookup(opts.Lookup)
		if err != nil {
			return nil, err
		}
		s.lookup = l
	}
	s.tags = append(sortedFields(opts.Gateway), sortedFields(opts.Tags)...)
	return s, nil
}

// normalization checks and compiles renames, coercions, conversions and the
// event time. Errors start with the option's name (rename, coerce, units,
// event_time) and the field.
func (s *Stage) normalization(opts StageOptions) error {
	targets := map[string]string{}
	for _, from := range slices.Sorted(maps.Keys(opts.Rename)) {
		to := opts.Rename[from]
		switch {
		case from == "" || to == "":
			return fmt.Errorf("rename %q: names must not be empty", from)
		case targets[to] != "":
			return fmt.Errorf("rename %s: %s and %s both become %s", from, targets[to], from, to)
		}
		targets[to] = from
		s.renames = append(s.renames, rename{from, to})
	}
	for _, rn := range s.renames {
		if _, chained := opts.Rename[rn.to]; chained {
			return fmt.Errorf("rename %s: %s is renamed too; rename %s to its final name", rn.from, rn.to, rn.from)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(opts.Coerce)) {
		switch k := opts.Coerce[f]; k {
		case CoerceNumber, CoerceString, CoerceBool:
			s.coercions = append(s.coercions, coercion{f, k})
		default:
			return fmt.Errorf("coerce %s: %q is not number, string or bool", f, k)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(opts.Units)) {
		c, err := ParseConversion(opts.Units[f])
		if err != nil {
			return fmt.Errorf("units %s: %w", f, err)
		}
		s.convs = append(s.convs, conversion{field: f, spec: opts.Units[f], conv: c})
	}
	if e := opts.EventTime; e != nil {
		if e.Field == "" {
			return errors.New("event_time: field is required")
		}
		if e.Format > TimeRFC3339 {
			return fmt.Errorf("event_time format: %d is not a format", e.Format)
		}
	}
	return nil
}

// Apply runs the stage on r; the error says why r is a dead letter.
func (s *Stage) Apply(r *rules.Record) error {
	if len(s.topic) > 0 {
		if err := s.extract(r); err != nil {
			return err
		}
	}
	if len(s.renames) > 0 {
		applyRenames(r, s.renames)
	}
	s.scratch = s.scratch[:0]
	for _, c := range s.coercions {
		if err := s.coerce(r, c); err != nil {
			return err
		}
	}
	for i := range s.convs {
		if err := s.convs[i].apply(r); err != nil {
			return err
		}
	}
	if s.eventTime != nil {
		if err := s.eventTime.apply(r); err != nil {
			return err
		}
	}
	for i := range s.schema {
		if err := s.schema[i].check(r); err != nil {
			return err
		}
	}
	if s.lookup != nil {
		if err := s.lookup.apply(s, r); err != nil {
			return err
		}
	}
	for _, t := range s.tags {
		r.Set(t.Name, t.Value)
	}
	return nil
}

func (s *Stage) extract(r *rules.Record) error {
	topic := r.Topic
	for i, part := range s.topic {
		seg := topic
		rest := ""
		if j := strings.IndexByte(topic, '/'); j >= 0 {
			seg, rest = topic[:j], topic[j+1:]
		} else if i < len(s.topic)-1 {
			return fmt.Errorf("topic %q has fewer levels than the input's pattern", r.Topic)
		}
		if part.field != "" {
			r.Set(part.field, rules.String(seg))
		} else if seg != part.literal {
			return fmt.Errorf("topic %q does not match the input's pattern at %q", r.Topic, seg)
		}
		topic = rest
	}
	if topic != "" {
		return fmt.Errorf("topic %q has more levels than the input's pattern", r.Topic)
	}
	return nil
}

func (f *FieldSpec) check(r *rules.Record) error {
	v, ok := r.Get(f.Name)
	if !ok || v.Kind == rules.KindNull {
		if f.Required {
			return fmt.Errorf("field %s is required", f.Name)
		}
		return nil
	}
	switch f.Type {
	case "number":
		if v.Kind != rules.KindNumber {
			return fmt.Errorf("field %s is a %s, want a number", f.Name, v.Kind)
		}
	case "string":
		if v.Kind != rules.KindString {
			return fmt.Errorf("field %s is a %s, want a string", f.Name, v.Kind)
		}
	case "bool":
		if v.Kind != rules.KindBool {
			return fmt.Errorf("field %s is a %s, want a bool", f.Name, v.Kind)
		}
	}
	if v.Kind == rules.KindNumber {
		if math.IsNaN(v.Num) || (f.Min != nil && v.Num < *f.Min) || (f.Max != nil && v.Num > *f.Max) {
			return fmt.Errorf("field %s = %v is out of range", f.Name, v.Num)
		}
	}
	if len(f.Enum) > 0 && v.Kind == rules.KindString {
		for _, e := range f.Enum {
			if v.Str == e {
				return nil
			}
		}
		return fmt.Errorf("field %s = %q is not one of %s", f.Name, v.Str, strings.Join(f.Enum, ", "))
	}
	return nil
}

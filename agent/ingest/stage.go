package ingest

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/sluiceio/sluice/rules"
)

// Stage is what an input does to a decoded record before the rules: topic
// segments become fields (`sensors/{site}/{device}/telemetry`), the schema is
// checked, and static fields are added. A record that fails is a dead letter
// with the error as its reason. Apply does not allocate: segment values are
// substrings of the topic.
type Stage struct {
	topic  []topicPart
	schema []FieldSpec
	tags   []rules.Field
}

// StageOptions configure a Stage.
type StageOptions struct {
	Topic  string            // pattern; {name} segments become fields
	Schema []FieldSpec       // checks, in order
	Tags   map[string]string // static fields added to every record
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
	s := &Stage{schema: opts.Schema}
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
	for name, v := range opts.Tags {
		s.tags = append(s.tags, rules.Field{Name: name, Value: rules.String(v)})
	}
	return s, nil
}

// Apply runs the stage on r; the error says why r is a dead letter.
func (s *Stage) Apply(r *rules.Record) error {
	if len(s.topic) > 0 {
		if err := s.extract(r); err != nil {
			return err
		}
	}
	for i := range s.schema {
		if err := s.schema[i].check(r); err != nil {
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

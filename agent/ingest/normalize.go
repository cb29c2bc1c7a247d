package ingest

import (
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"github.com/sluiceio/sluice/rules"
)

// Coercion kinds.
const (
	CoerceNumber = "number"
	CoerceString = "string"
	CoerceBool   = "bool"
)

// LookupOptions enrich records from a table keyed by a field's value.
type LookupOptions struct {
	Key    string                   // field whose value (as text) selects the row
	Table  map[string][]rules.Field // row → fields set on the record
	OnMiss string                   // keep (default) or dead_letter
}

// Lookup misses.
const (
	MissKeep       = "keep"
	MissDeadLetter = "dead_letter"
)

type rename struct{ from, to string }

type coercion struct {
	field string
	kind  string
}

type conversion struct {
	field string
	spec  string
	conv  Conversion
}

type lookup struct {
	key        string
	rows       map[string][]rules.Field
	deadLetter bool
}

// fieldIndex returns the index of the named field in r, or -1.
func fieldIndex(r *rules.Record, name string) int {
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// removeField deletes field i keeping the others in order.
func removeField(r *rules.Record, i int) {
	r.Fields = append(r.Fields[:i], r.Fields[i+1:]...)
}

// applyRenames gives fields their new names; a field already holding the
// new name is replaced by the renamed one.
func applyRenames(r *rules.Record, rs []rename) {
	for _, rn := range rs {
		i := fieldIndex(r, rn.from)
		if i < 0 {
			continue
		}
		r.Fields[i].Name = rn.to
		for j := range r.Fields {
			if j != i && r.Fields[j].Name == rn.to {
				removeField(r, j)
				break
			}
		}
	}
}

// coerce converts a field to kind. Strings made from numbers go to scratch,
// which the stage reuses per record (plans copy the strings they keep).
func (s *Stage) coerce(r *rules.Record, c coercion) error {
	i := fieldIndex(r, c.field)
	if i < 0 || r.Fields[i].Kind == rules.KindNull || r.Fields[i].Kind.String() == c.kind {
		return nil
	}
	v := &r.Fields[i].Value
	switch c.kind {
	case CoerceNumber:
		switch v.Kind {
		case rules.KindBool:
			*v = rules.Number(v.Num)
		case rules.KindString:
			f, ok := parseNumber(unsafeBytes(strings.TrimSpace(v.Str)))
			if !ok {
				return fmt.Errorf("field %s = %s is not a number", c.field, valueText(*v))
			}
			*v = rules.Number(f)
		}
	case CoerceString:
		start := len(s.scratch)
		s.scratch = v.AppendText(s.scratch)
		*v = rules.String(unsafeString(s.scratch[start:len(s.scratch):len(s.scratch)]))
	case CoerceBool:
		switch v.Kind {
		case rules.KindNumber:
			*v = rules.Bool(v.Num != 0)
		case rules.KindString:
			b, ok := parseBool(strings.TrimSpace(v.Str))
			if !ok {
				return fmt.Errorf("field %s = %s is not a bool (true/false, 1/0, yes/no, on/off)", c.field, valueText(*v))
			}
			*v = rules.Bool(b)
		}
	}
	return nil
}

func parseBool(s string) (bool, bool) {
	for _, t := range [...]string{"true", "1", "yes", "on", "t", "y"} {
		if strings.EqualFold(s, t) {
			return true, true
		}
	}
	for _, f := range [...]string{"false", "0", "no", "off", "f", "n"} {
		if strings.EqualFold(s, f) {
			return false, true
		}
	}
	return false, false
}

func (c *conversion) apply(r *rules.Record) error {
	i := fieldIndex(r, c.field)
	if i < 0 || r.Fields[i].Kind == rules.KindNull {
		return nil
	}
	v := &r.Fields[i].Value
	if v.Kind != rules.KindNumber {
		return fmt.Errorf("field %s = %s is a %s; units %s need a number", c.field, valueText(*v), v.Kind, c.spec)
	}
	v.Num = c.conv.Apply(v.Num)
	return nil
}

// apply sets the fields of the row that r's key selects. Numbers and bools
// are looked up by their text (2 → "2", true → "true").
func (l *lookup) apply(s *Stage, r *rules.Record) error {
	v, ok := r.Get(l.key)
	var row []rules.Field
	found := false
	if ok && v.Kind != rules.KindNull {
		if v.Kind == rules.KindString {
			row, found = l.rows[v.Str]
		} else {
			start := len(s.scratch)
			s.scratch = v.AppendText(s.scratch)
			row, found = l.rows[string(s.scratch[start:])] // no allocation: map index
			s.scratch = s.scratch[:start]
		}
	}
	if !found {
		if l.deadLetter {
			return fmt.Errorf("lookup: no row for %s = %s", l.key, valueText(v))
		}
		return nil
	}
	for _, f := range row {
		r.Set(f.Name, f.Value)
	}
	return nil
}

func newLookup(o *LookupOptions) (*lookup, error) {
	if o.Key == "" {
		return nil, fmt.Errorf("lookup: key is required")
	}
	l := &lookup{key: o.Key, rows: make(map[string][]rules.Field, len(o.Table))}
	switch o.OnMiss {
	case "", MissKeep:
	case MissDeadLetter:
		l.deadLetter = true
	default:
		return nil, fmt.Errorf("lookup: on_miss %q is not keep or dead_letter", o.OnMiss)
	}
	for k, fs := range o.Table {
		row := append([]rules.Field(nil), fs...)
		sort.Slice(row, func(i, j int) bool { return row[i].Name < row[j].Name })
		l.rows[k] = row
	}
	return l, nil
}

func sortedFields(m map[string]string) []rules.Field {
	fs := make([]rules.Field, 0, len(m))
	for name, v := range m {
		fs = append(fs, rules.Field{Name: name, Value: rules.String(v)})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	return fs
}

// ValueOf turns a scalar decoded from config (YAML or JSON) into a Value:
// numbers, strings, bools and null.
func ValueOf(x any) (rules.Value, error) {
	switch v := x.(type) {
	case nil:
		return rules.Null, nil
	case string:
		return rules.String(v), nil
	case bool:
		return rules.Bool(v), nil
	case int:
		return rules.Number(float64(v)), nil
	case int64:
		return rules.Number(float64(v)), nil
	case uint64:
		return rules.Number(float64(v)), nil
	case float64:
		return rules.Number(v), nil
	}
	return rules.Null, fmt.Errorf("%v is not a number, string or bool", x)
}

func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

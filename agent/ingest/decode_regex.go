package ingest

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/sluiceio/sluice/rules"
)

// RegexDecoder decodes with a regular expression: each named group that
// matched becomes a field, a number when the whole group is one, else a
// string. A payload the pattern does not match is an error. The pattern is
// not anchored unless it says so (^...$).
type RegexDecoder struct {
	re    *regexp.Regexp
	names []string // per group; "" for unnamed
}

// ErrNoMatch is returned by a RegexDecoder for a payload its pattern does
// not match.
var ErrNoMatch = errors.New("pattern does not match")

func newRegexDecoder(o DecoderOptions) (Decoder, error) {
	if o.Pattern == "" {
		return nil, errors.New("regex needs a pattern")
	}
	re, err := regexp.Compile(o.Pattern)
	if err != nil {
		return nil, err
	}
	d := &RegexDecoder{re: re, names: re.SubexpNames()}
	named := false
	for _, n := range d.names {
		named = named || n != ""
	}
	if !named {
		return nil, fmt.Errorf("pattern %q has no named group ((?P<name>...))", o.Pattern)
	}
	return d, nil
}

// Decode appends the named groups of payload's first match to r.
func (d *RegexDecoder) Decode(payload []byte, r *rules.Record) error {
	m := d.re.FindSubmatchIndex(payload)
	if m == nil {
		return ErrNoMatch
	}
	for g := 1; g < len(d.names); g++ {
		if d.names[g] == "" || m[2*g] < 0 {
			continue
		}
		r.Fields = append(r.Fields, rules.Field{Name: d.names[g], Value: typedValue(payload[m[2*g]:m[2*g+1]])})
	}
	return nil
}

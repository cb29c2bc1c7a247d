package ingest

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/sluiceio/sluice/rules"
)

// Decoder turns a payload into the fields of a record: it appends fields to
// r (and may set r.Time). String values may point into payload, which
// sources never reuse. A Decoder is used by one goroutine (the pipeline's),
// so it keeps scratch state without locking; decoding allocates no map per
// message.
type Decoder interface {
	Decode(payload []byte, r *rules.Record) error
}

// DecoderOptions configure the decoders that need it; each reads only its
// own fields.
type DecoderOptions struct {
	Header    []string // csv: column names (required); "" skips a column
	Delimiter byte     // csv: ',' when 0
	Pattern   string   // regex: a regular expression with named groups
	Field     string   // number: the field's name ["value"]
	Precision string   // influx: timestamp unit, ns (default), us, ms or s
}

// decoders is the registry: adding a format is one file and one line here.
var decoders = map[string]func(DecoderOptions) (Decoder, error){
	"json":   func(DecoderOptions) (Decoder, error) { return &JSONDecoder{}, nil },
	"csv":    newCSVDecoder,
	"logfmt": func(DecoderOptions) (Decoder, error) { return &LogfmtDecoder{}, nil },
	"regex":  newRegexDecoder,
	"influx": newInfluxDecoder,
	"number": newNumberDecoder,
}

// DecoderKinds lists the formats NewDecoder knows, sorted.
func DecoderKinds() []string {
	ks := make([]string, 0, len(decoders))
	for k := range decoders {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ErrUnknownFormat is returned by NewDecoder for a kind it does not know.
var ErrUnknownFormat = errors.New("unknown format")

// NewDecoder returns a decoder of kind ("json", "csv", "logfmt", "regex",
// "influx", "number"), or an error saying what is wrong with opts.
func NewDecoder(kind string, opts DecoderOptions) (Decoder, error) {
	mk, ok := decoders[kind]
	if !ok {
		return nil, fmt.Errorf("format %q: %w (want one of %v)", kind, ErrUnknownFormat, DecoderKinds())
	}
	d, err := mk(opts)
	if err != nil {
		return nil, fmt.Errorf("format %s: %w", kind, err)
	}
	return d, nil
}

// parseNumber parses b when all of it is a decimal number (no hex, inf, nan
// or underscores), without allocating.
func parseNumber(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 64 {
		return 0, false
	}
	digit := false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E':
		default:
			return 0, false
		}
	}
	if !digit {
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafeString(b), 64)
	return f, err == nil
}

// typedValue is a number when all of b is one, else a string aliasing b.
func typedValue(b []byte) rules.Value {
	if f, ok := parseNumber(b); ok {
		return rules.Number(f)
	}
	return rules.String(unsafeString(b))
}

// interner returns one string per distinct name, up to a bound, so that
// names from payloads do not allocate once seen.
type interner map[string]string

func (in *interner) intern(b []byte) string {
	if s, ok := (*in)[string(b)]; ok {
		return s
	}
	s := string(b)
	if *in == nil {
		*in = make(interner)
	}
	if len(*in) < maxInternedNames {
		(*in)[s] = s
	}
	return s
}

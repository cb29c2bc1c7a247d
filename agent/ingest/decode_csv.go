package ingest

import (
	"errors"
	"fmt"

	"github.com/sluiceio/sluice/rules"
)

// CSVDecoder decodes one CSV line with a configured header: column i becomes
// field Header[i] (a column whose name is "" is skipped; an empty value is
// left out, so a required check sees it missing). Values that are wholly
// numbers are numbers, others strings. Quoted values follow RFC 4180 ("a,b",
// "say ""hi"""); a line with fewer columns than the header is accepted, one
// with more is an error.
type CSVDecoder struct {
	header []string
	delim  byte
}

func newCSVDecoder(o DecoderOptions) (Decoder, error) {
	if len(o.Header) == 0 {
		return nil, errors.New("csv needs a header")
	}
	d := &CSVDecoder{header: o.Header, delim: o.Delimiter}
	if d.delim == 0 {
		d.delim = ','
	}
	if d.delim == '"' || d.delim == '\n' || d.delim == '\r' {
		return nil, fmt.Errorf("csv delimiter %q", d.delim)
	}
	return d, nil
}

// Decode appends the columns of payload to r.
func (d *CSVDecoder) Decode(payload []byte, r *rules.Record) error {
	b := payload
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	col := 0
	for i := 0; ; col++ {
		var v []byte
		quoted := false
		if i < len(b) && b[i] == '"' {
			quoted = true
			j, val, err := csvQuoted(b, i+1)
			if err != nil {
				return err
			}
			v, i = val, j
			if i < len(b) && b[i] != d.delim {
				return fmt.Errorf("csv column %d: data after the closing quote", col+1)
			}
		} else {
			j := i
			for j < len(b) && b[j] != d.delim {
				if b[j] == '"' {
					return fmt.Errorf("csv column %d: quote inside an unquoted value", col+1)
				}
				j++
			}
			v, i = b[i:j], j
		}
		if col >= len(d.header) {
			return fmt.Errorf("csv: more than the %d columns of the header", len(d.header))
		}
		if name := d.header[col]; name != "" && len(v) > 0 {
			val := typedValue(v)
			if quoted {
				val = rules.String(unsafeString(v))
			}
			r.Fields = append(r.Fields, rules.Field{Name: name, Value: val})
		}
		if i >= len(b) {
			return nil
		}
		i++ // delimiter
	}
}

// csvQuoted reads a quoted value starting after its opening quote; it
// returns the index after the closing quote and the value (aliasing b
// unless it held doubled quotes).
func csvQuoted(b []byte, i int) (int, []byte, error) {
	start := i
	var out []byte
	for i < len(b) {
		if b[i] != '"' {
			i++
			continue
		}
		if i+1 < len(b) && b[i+1] == '"' {
			out = append(out, b[start:i+1]...)
			i += 2
			start = i
			continue
		}
		if out == nil {
			return i + 1, b[start:i], nil
		}
		return i + 1, append(out, b[start:i]...), nil
	}
	return 0, nil, errors.New("csv: unterminated quote")
}

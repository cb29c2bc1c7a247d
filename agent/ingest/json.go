package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/sluiceio/sluice/rules"
)

// JSONDecoder decodes a JSON object into a flat record without allocating per
// message: field names are interned, numbers are parsed in place, and string
// values point into the payload (which the source does not reuse). Nested
// objects flatten into dotted names ("gps.lat"); arrays are skipped.
//
// A JSONDecoder is used by one goroutine.
type JSONDecoder struct {
	names map[string]string // interned field names
	path  []byte            // scratch for dotted names
	// byPos holds the name of the field at each position of the last
	// payload: a device sends the same fields in the same order, and a
	// comparison costs less than a lookup in names.
	byPos []string
}

// maxInternedNames bounds the intern table against payloads with random keys.
const maxInternedNames = 4096

// maxDepth bounds nesting, so hostile payloads cannot recurse deeply.
const maxDepth = 16

// ErrNotObject is returned for payloads that are not a JSON object.
var ErrNotObject = errors.New("payload is not a JSON object")

// Decode appends the fields of payload to r.
func (d *JSONDecoder) Decode(payload []byte, r *rules.Record) error {
	s := scanner{b: payload}
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return ErrNotObject
	}
	d.path = d.path[:0]
	if err := d.object(&s, r, 0); err != nil {
		return err
	}
	s.skipSpace()
	if s.i != len(s.b) {
		return s.errorf("unexpected data after the object")
	}
	return nil
}

// name returns the interned d.path, the name of field number i of the
// record.
func (d *JSONDecoder) name(i int) string {
	if i < len(d.byPos) && d.byPos[i] == string(d.path) {
		return d.byPos[i]
	}
	s := d.intern(d.path)
	if i < len(d.byPos) {
		d.byPos[i] = s
	} else if i == len(d.byPos) && i < maxFieldsByPos {
		d.byPos = append(d.byPos, s)
	}
	return s
}

// maxFieldsByPos bounds JSONDecoder.byPos.
const maxFieldsByPos = 64

func (d *JSONDecoder) intern(b []byte) string {
	if s, ok := d.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.names == nil {
		d.names = make(map[string]string)
	}
	if len(d.names) < maxInternedNames {
		d.names[s] = s
	}
	return s
}

// object decodes the object at s (at its '{').
func (d *JSONDecoder) object(s *scanner, r *rules.Record, depth int) error {
	if depth >= maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	s.i++ // {
	base := len(d.path)
	s.skipSpace()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.skipSpace()
		key, err := s.str()
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.peek() != ':' {
			return s.errorf("expected ':'")
		}
		s.i++
		s.skipSpace()
		d.path = d.path[:base]
		if base > 0 {
			d.path = append(d.path, '.')
		}
		d.path = append(d.path, key...)
		switch c := s.peek(); {
		case c == '{':
			if err := d.object(s, r, depth+1); err != nil {
				return err
			}
		case c == '[':
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
		case c == '"':
			v, err := s.str()
			if err != nil {
				return err
			}
			r.Fields = append(r.Fields, rules.Field{Name: d.name(len(r.Fields)), Value: rules.String(unsafeString(v))})
		case c == 't' || c == 'f' || c == 'n':
			v, err := s.literal()
			if err != nil {
				return err
			}
			r.Fields = append(r.Fields, rules.Field{Name: d.name(len(r.Fields)), Value: v})
		default:
			f, err := s.number()
			if err != nil {
				return err
			}
			r.Fields = append(r.Fields, rules.Field{Name: d.name(len(r.Fields)), Value: rules.Number(f)})
		}
		d.path = d.path[:base]
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("expected ',' or '}'")
		}
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("json at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string at s.i. Without escapes the result aliases the payload;
// with escapes it is a fresh copy.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.errorf("expected a string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, nil
		case c == '\\':
			return s.escaped(start)
		case c < 0x20:
			return nil, s.errorf("control character in string")
		}
		s.i++
	}
	return nil, s.errorf("unterminated string")
}

func (s *scanner) escaped(start int) ([]byte, error) {
	out := append([]byte(nil), s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return out, nil
		case c < 0x20:
			return nil, s.errorf("control character in string")
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			break
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if s.i+4 > len(s.b) {
				return nil, s.errorf("short \\u escape")
			}
			n, err := strconv.ParseUint(string(s.b[s.i:s.i+4]), 16, 32)
			if err != nil {
				return nil, s.errorf("bad \\u escape")
			}
			s.i += 4
			r := rune(n)
			if r >= 0xD800 && r < 0xDC00 && s.i+6 <= len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
				if lo, err := strconv.ParseUint(string(s.b[s.i+2:s.i+6]), 16, 32); err == nil && lo >= 0xDC00 && lo < 0xE000 {
					r = (r-0xD800)<<10 + (rune(lo) - 0xDC00) + 0x10000
					s.i += 6
				}
			}
			out = appendRune(out, r)
		default:
			return nil, s.errorf("bad escape \\%c", e)
		}
	}
	return nil, s.errorf("unterminated string")
}

func appendRune(b []byte, r rune) []byte {
	var tmp [4]byte
	n := encodeRune(tmp[:], r)
	return append(b, tmp[:n]...)
}

func (s *scanner) literal() (rules.Value, error) {
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return rules.Bool(true), nil
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return rules.Bool(false), nil
	case len(rest) >= 4 && string(rest[:4]) == "null":
		s.i += 4
		return rules.Null, nil
	}
	return rules.Null, s.errorf("bad literal")
}

func (s *scanner) number() (float64, error) {
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	if start == s.i {
		return 0, s.errorf("expected a value")
	}
	if f, ok := fastNumber(s.b[start:s.i]); ok {
		return f, nil
	}
	// ParseFloat accepts forms JSON does not (Inf, 0x1p3, _); the loop above
	// only lets digits, signs, '.' and exponents through.
	f, err := strconv.ParseFloat(unsafeString(s.b[start:s.i]), 64)
	if err != nil {
		s.i = start
		return 0, s.errorf("bad number")
	}
	return f, nil
}

// fastNumber parses what sensors send most (an optional '-', at most 15
// digits, at most one '.', no exponent) in a fraction of ParseFloat's time,
// to the same float64: the digits make an integer below 2^53 and the
// fraction a power of ten up to 10^15, both exact as float64, and IEEE
// division rounds the quotient correctly. ParseFloat takes the same path
// for these inputs (Clinger's fast path); FuzzFastNumber compares the two.
// ok is false for anything else, which ParseFloat then handles.
func fastNumber(b []byte) (f float64, ok bool) {
	i := 0
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		i = 1
	}
	var mant uint64
	digits, frac := 0, -1
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	f = float64(mant)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// skipValue skips any JSON value (used for arrays).
func (s *scanner) skipValue(depth int) error {
	if depth >= maxDepth {
		return s.errorf("nested deeper than %d", maxDepth)
	}
	s.skipSpace()
	switch c := s.peek(); {
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		s.i++
		s.skipSpace()
		if s.peek() == closing {
			s.i++
			return nil
		}
		for {
			s.skipSpace()
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				s.skipSpace()
				if s.peek() != ':' {
					return s.errorf("expected ':'")
				}
				s.i++
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			s.skipSpace()
			switch s.peek() {
			case ',':
				s.i++
			case closing:
				s.i++
				return nil
			default:
				return s.errorf("expected ',' or '%c'", closing)
			}
		}
	case c == '"':
		_, err := s.str()
		return err
	case c == 't' || c == 'f' || c == 'n':
		_, err := s.literal()
		return err
	}
	_, err := s.number()
	return err
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

package uplink

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidTemplate is wrapped by every error of ParseTemplate and
// ParseSubject.
var ErrInvalidTemplate = errors.New("invalid template")

// ErrInvalidSubject is wrapped by the error of a delivery whose subject,
// expanded from the template with the gateway id and an entry's rule, is not
// a valid NATS subject (a rule name with a space, say). Retrying such an
// entry cannot succeed; the caller decides what to do with it.
var ErrInvalidSubject = errors.New("invalid subject")

// Template is a subject or topic with placeholders, such as
// "telemetry.{gateway}.{rule}". The placeholders are {gateway} (the gateway
// id) and {rule} (the name of the rule that produced the output); there is no
// escape for a literal brace.
//
// A Template is immutable and safe for concurrent use. The zero Template
// expands to the empty string.
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit string // literal text when ph is phNone
	ph  placeholder
}

type placeholder uint8

const (
	phNone placeholder = iota
	phGateway
	phRule
)

// ParseTemplate parses s. It returns an error wrapping ErrInvalidTemplate
// when s is empty, names a placeholder other than {gateway} and {rule} (the
// message names it), or has an unbalanced brace.
func ParseTemplate(s string) (Template, error) {
	if s == "" {
		return Template{}, fmt.Errorf("%w: empty", ErrInvalidTemplate)
	}
	var parts []part
	lit := 0 // start of the pending literal
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			return Template{}, fmt.Errorf("%w %q: unmatched } at offset %d", ErrInvalidTemplate, s, i)
		case '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] == '{' {
				return Template{}, fmt.Errorf("%w %q: unclosed { at offset %d", ErrInvalidTemplate, s, i)
			}
			end += i + 1
			var ph placeholder
			switch name := s[i+1 : end]; name {
			case "gateway":
				ph = phGateway
			case "rule":
				ph = phRule
			default:
				return Template{}, fmt.Errorf("%w %q: unknown placeholder {%s} (known: {gateway}, {rule})", ErrInvalidTemplate, s, name)
			}
			if lit < i {
				parts = append(parts, part{lit: s[lit:i]})
			}
			parts = append(parts, part{ph: ph})
			i = end
			lit = end + 1
		}
	}
	if lit < len(s) {
		parts = append(parts, part{lit: s[lit:]})
	}
	return Template{src: s, parts: parts}, nil
}

// ParseSubject parses s as ParseTemplate does and also checks that every
// subject it expands to with non-empty, valid values is a valid NATS subject
// to publish to: no whitespace, no wildcard characters ('*', '>') and no empty
// token (a leading or trailing '.', or "..").
func ParseSubject(s string) (Template, error) {
	t, err := ParseTemplate(s)
	if err != nil {
		return Template{}, err
	}
	if err := t.checkSubject(); err != nil {
		return Template{}, err
	}
	return t, nil
}

// checkSubject checks the literal text of t against the rules of
// ParseSubject, taking each placeholder as a valid, non-empty value.
func (t Template) checkSubject() error {
	if len(t.parts) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidTemplate)
	}
	tokenLen := 0 // length of the current token so far; placeholders count 1
	for _, p := range t.parts {
		if p.ph != phNone {
			tokenLen++
			continue
		}
		for i := 0; i < len(p.lit); i++ {
			switch c := p.lit[i]; {
			case c == '.':
				if tokenLen == 0 {
					return fmt.Errorf("%w %q: empty subject token", ErrInvalidTemplate, t.src)
				}
				tokenLen = 0
			case c == '*' || c == '>':
				return fmt.Errorf("%w %q: wildcard %q in a subject to publish to", ErrInvalidTemplate, t.src, c)
			case isSpace(c):
				return fmt.Errorf("%w %q: whitespace in a subject", ErrInvalidTemplate, t.src)
			default:
				tokenLen++
			}
		}
	}
	if tokenLen == 0 {
		return fmt.Errorf("%w %q: empty subject token", ErrInvalidTemplate, t.src)
	}
	return nil
}

// validSubject reports whether b is a valid NATS subject to publish to, by
// the rules of ParseSubject.
func validSubject(b []byte) bool {
	tokenLen := 0
	for _, c := range b {
		switch {
		case c == '.':
			if tokenLen == 0 {
				return false
			}
			tokenLen = 0
		case c == '*' || c == '>' || isSpace(c):
			return false
		default:
			tokenLen++
		}
	}
	return tokenLen > 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

// Append appends the expansion of t to dst and returns the extended slice.
// Values are inserted verbatim. It allocates only when dst has to grow.
func (t Template) Append(dst []byte, gateway, rule string) []byte {
	for _, p := range t.parts {
		switch p.ph {
		case phGateway:
			dst = append(dst, gateway...)
		case phRule:
			dst = append(dst, rule...)
		default:
			dst = append(dst, p.lit...)
		}
	}
	return dst
}

// Expand returns the expansion of t.
func (t Template) Expand(gateway, rule string) string {
	n := 0
	for _, p := range t.parts {
		switch p.ph {
		case phGateway:
			n += len(gateway)
		case phRule:
			n += len(rule)
		default:
			n += len(p.lit)
		}
	}
	return string(t.Append(make([]byte, 0, n), gateway, rule))
}

// String returns the text t was parsed from.
func (t Template) String() string { return t.src }

package rules

import (
	"fmt"
	"strings"
)

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokNumber
	tokString
	tokIdent
	tokOp    // punctuation and operators
	tokError // lexing error; text holds the message
)

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the source
}

// lex splits src into tokens. Keywords are returned as identifiers; the
// parser matches them case-insensitively, as SQL does.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isDigit(c) || (c == '.' && i+1 < len(src) && isDigit(src[i+1])):
			start := i
			for i < len(src) && (isDigit(src[i]) || src[i] == '.') {
				i++
			}
			if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
				j := i + 1
				if j < len(src) && (src[j] == '+' || src[j] == '-') {
					j++
				}
				if j < len(src) && isDigit(src[j]) {
					i = j
					for i < len(src) && isDigit(src[i]) {
						i++
					}
				}
			}
			toks = append(toks, token{tokNumber, src[start:i], start})
		case isIdentStart(c):
			start := i
			for i < len(src) && (isIdentPart(src[i]) || (src[i] == '.' && i+1 < len(src) && isIdentStart(src[i+1]))) {
				i++
			}
			toks = append(toks, token{tokIdent, src[start:i], start})
		case c == '\'':
			// SQL string: '' escapes a quote.
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, posErrorf(src, start, "unterminated string")
				}
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, token{tokString, b.String(), start})
		case c == '"' || c == '`':
			// Quoted identifier, as in SQL ("my field") and MySQL (`my field`).
			start := i
			end := strings.IndexByte(src[i+1:], c)
			if end < 0 {
				return nil, posErrorf(src, start, "unterminated quoted name")
			}
			toks = append(toks, token{tokIdent, src[i+1 : i+1+end], start})
			i += end + 2
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			// SQL comment to the end of the line.
			for i < len(src) && src[i] != '\n' {
				i++
			}
		default:
			start := i
			two := ""
			if i+1 < len(src) {
				two = src[i : i+2]
			}
			switch two {
			case "<=", ">=", "<>", "!=", "==", "&&", "||":
				toks = append(toks, token{tokOp, two, start})
				i += 2
				continue
			}
			switch c {
			case '<', '>', '=', '+', '-', '*', '/', '%', '(', ')', ',', '!', ';':
				toks = append(toks, token{tokOp, string(c), start})
				i++
			default:
				return nil, posErrorf(src, start, "unexpected character %q", c)
			}
		}
	}
	toks = append(toks, token{tokEOF, "", len(src)})
	return toks, nil
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// PosError is an error at a position of an expression's source.
type PosError struct {
	Line, Column int // 1-based
	Msg          string
	Err          error // the cause, when it has a type of its own (NoModelError)
}

func (e *PosError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }
func (e *PosError) Unwrap() error { return e.Err }

// NoModelError is the cause of the error of a rule that calls a model its
// Options do not have: a config whose model failed to load reports that
// model, not every rule calling it.
type NoModelError struct{ Name string }

func (e *NoModelError) Error() string { return fmt.Sprintf("no model %q", e.Name) }

func posErrorf(src string, pos int, format string, args ...any) error {
	line, col := 1, 1
	for i := 0; i < pos && i < len(src); i++ {
		if src[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &PosError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

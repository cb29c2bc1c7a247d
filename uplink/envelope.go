package uplink

import (
	"strconv"
	"unicode/utf8"

	"github.com/sluiceio/sluice/buffer"
)

// Envelope writes the upstream JSON envelope (DESIGN.md, "Upstream envelope")
// for one gateway. It holds the escaped `{"gateway":"<id>","seq":` prefix so
// that Append only copies bytes and formats the sequence number.
//
// The zero Envelope writes an empty gateway id (`"gateway":""`). An Envelope is
// immutable after NewEnvelope and safe for concurrent use.
type Envelope struct {
	prefix []byte
}

// NewEnvelope returns the Envelope of the given gateway id. The id is
// JSON-escaped once here.
func NewEnvelope(gateway string) Envelope {
	p := make([]byte, 0, len(`{"gateway":"","seq":`)+len(gateway)+8)
	return Envelope{prefix: appendPrefix(p, gateway)}
}

// Append appends the envelope of e to dst and returns the extended slice: the
// gateway and e.Seq first, then the members of e.Payload, in their order and
// byte for byte.
//
// e.Payload is a JSON object without "gateway" and "seq" (the buffer stores
// it so). Whitespace around its braces is tolerated; an empty or nil Payload
// is taken as {}. Append does not validate the payload: bytes that are not a
// JSON object are kept rather than dropped, as the value of a "payload" member
// (`{"gateway":"gw","seq":7,"payload":<bytes>}`), so the upstream sees them
// and nothing is lost silently.
//
// Append allocates only when dst has to grow.
func (v Envelope) Append(dst []byte, e *buffer.Entry) []byte {
	if v.prefix == nil {
		dst = appendPrefix(dst, "")
	} else {
		dst = append(dst, v.prefix...)
	}
	return appendRest(dst, e)
}

// AppendEnvelope appends the envelope of e from the given gateway to dst; see
// Envelope.Append for the format. It escapes gateway on every call; an
// uplink that writes many envelopes keeps an Envelope instead.
func AppendEnvelope(dst []byte, gateway string, e *buffer.Entry) []byte {
	dst = appendPrefix(dst, gateway)
	return appendRest(dst, e)
}

func appendPrefix(dst []byte, gateway string) []byte {
	dst = append(dst, `{"gateway":`...)
	dst = appendJSONString(dst, gateway)
	return append(dst, `,"seq":`...)
}

// appendRest writes the sequence number and the payload's members after a
// prefix ending in `"seq":`.
func appendRest(dst []byte, e *buffer.Entry) []byte {
	dst = strconv.AppendUint(dst, e.Seq, 10)
	p := e.Payload
	i := skipSpace(p, 0)
	if i == len(p) {
		return append(dst, '}')
	}
	if p[i] != '{' {
		dst = append(dst, `,"payload":`...)
		dst = append(dst, p[i:]...)
		return append(dst, '}')
	}
	rest := p[i+1:]
	if j := skipSpace(rest, 0); j < len(rest) && rest[j] == '}' {
		return append(dst, '}')
	}
	dst = append(dst, ',')
	return append(dst, rest...)
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string, escaped as
// encoding/json escapes it without HTML escaping: quote, backslash and control
// characters are escaped, U+2028 and U+2029 too (for JavaScript readers), and
// invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

package rules

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Output is what a plan emits: one window's values for one group, or one
// transformed record.
type Output struct {
	Rule        string
	Time        time.Time // window end, or the record's time
	WindowStart time.Time // zero for stateless rules
	WindowEnd   time.Time
	Key         []Field // group_by fields
	Values      []Field // select items, in order
	Event       string  // alerts: "raised" or "cleared"; patterns: "matched"; EventLate
}

// EventLate is the Event of the output a late record makes under
// EventTime.Late = LateEmit.
const EventLate = "late"

// Clone returns a copy of o that shares no memory with the plan or the record
// it came from.
func (o *Output) Clone() Output {
	c := *o
	c.Key = cloneFields(o.Key)
	c.Values = cloneFields(o.Values)
	return c
}

func cloneFields(fs []Field) []Field {
	if fs == nil {
		return nil
	}
	c := make([]Field, len(fs))
	for i, f := range fs {
		f.Name = strings.Clone(f.Name)
		f.Str = strings.Clone(f.Str)
		c[i] = f
	}
	return c
}

// GroupKey returns the output's key values joined with "\x00".
func (o *Output) GroupKey() string {
	var b []byte
	for i, k := range o.Key {
		if i > 0 {
			b = append(b, 0)
		}
		b = k.AppendText(b)
	}
	return string(b)
}

// AppendJSON appends the output as the JSON object of the upstream envelope
// without "gateway" and "seq", which the uplink adds:
// {"rule":…,"ts":…,"event":…,"window":{…},"key":{…},"values":{…},"tags":{…}}
// ("event" only for alerts, patterns and late records, "window" only for
// windowed rules).
func (o *Output) AppendJSON(dst []byte, tags []Field) []byte {
	dst = append(dst, `{"rule":`...)
	dst = AppendJSONString(dst, o.Rule)
	dst = append(dst, `,"ts":"`...)
	dst = o.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if o.Event != "" {
		dst = append(dst, `,"event":`...)
		dst = AppendJSONString(dst, o.Event)
	}
	if !o.WindowStart.IsZero() {
		dst = append(dst, `,"window":{"start":"`...)
		dst = o.WindowStart.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `","end":"`...)
		dst = o.WindowEnd.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `"}`...)
	}
	if len(o.Key) > 0 {
		dst = append(dst, `,"key":`...)
		dst = appendObject(dst, o.Key)
	}
	dst = append(dst, `,"values":`...)
	dst = appendObject(dst, o.Values)
	if len(tags) > 0 {
		dst = append(dst, `,"tags":`...)
		dst = appendObject(dst, tags)
	}
	return append(dst, '}')
}

func appendObject(dst []byte, fs []Field) []byte {
	dst = append(dst, '{')
	for i, f := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, f.Name)
		dst = append(dst, ':')
		dst = f.Value.AppendJSON(dst)
	}
	return append(dst, '}')
}

// AppendJSON appends v as JSON; NaN and infinities become null.
func (v Value) AppendJSON(dst []byte) []byte {
	switch v.Kind {
	case KindNumber:
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return append(dst, "null"...)
		}
		return appendNumber(dst, v.Num)
	case KindString:
		return AppendJSONString(dst, v.Str)
	case KindBool:
		return strconv.AppendBool(dst, v.Num != 0)
	}
	return append(dst, "null"...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// unsafeString views b as a string without copying. The caller must not keep
// the string beyond the next change of b.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

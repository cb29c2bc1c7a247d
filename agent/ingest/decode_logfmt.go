package ingest

import (
	"fmt"

	"github.com/sluiceio/sluice/rules"
)

// LogfmtDecoder decodes logfmt (level=info msg="disk full" temp=41.5 ok):
// pairs separated by spaces; a value may be double-quoted with \" \\ \n \t
// escapes; a key without '=' is true. Values that are wholly numbers are
// numbers, true and false are bools, others strings.
type LogfmtDecoder struct {
	names interner
}

// Decode appends the pairs of payload to r.
func (d *LogfmtDecoder) Decode(payload []byte, r *rules.Record) error {
	b := payload
	i := 0
	for {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i >= len(b) {
			return nil
		}
		start := i
		for i < len(b) && b[i] > ' ' && b[i] != '=' && b[i] != '"' {
			i++
		}
		if i == start {
			return fmt.Errorf("logfmt at byte %d: expected a key", i)
		}
		name := d.names.intern(b[start:i])
		if i >= len(b) || b[i] != '=' {
			if i < len(b) && b[i] == '"' {
				return fmt.Errorf("logfmt at byte %d: quote in a key", i)
			}
			r.Fields = append(r.Fields, rules.Field{Name: name, Value: rules.Bool(true)})
			continue
		}
		i++ // =
		if i < len(b) && b[i] == '"' {
			j, v, err := logfmtQuoted(b, i+1)
			if err != nil {
				return err
			}
			i = j
			r.Fields = append(r.Fields, rules.Field{Name: name, Value: rules.String(unsafeString(v))})
			continue
		}
		start = i
		for i < len(b) && b[i] > ' ' {
			if b[i] == '"' || b[i] == '=' {
				return fmt.Errorf("logfmt at byte %d: unexpected %q in a value", i, b[i])
			}
			i++
		}
		v := b[start:i]
		val := typedValue(v)
		switch string(v) {
		case "true":
			val = rules.Bool(true)
		case "false":
			val = rules.Bool(false)
		case "":
			val = rules.Null
		}
		r.Fields = append(r.Fields, rules.Field{Name: name, Value: val})
	}
}

// logfmtQuoted reads a quoted value after its opening quote; the value
// aliases b unless it holds escapes.
func logfmtQuoted(b []byte, i int) (int, []byte, error) {
	start := i
	for i < len(b) {
		switch b[i] {
		case '"':
			return i + 1, b[start:i], nil
		case '\\':
			out := append([]byte(nil), b[start:i]...)
			for i < len(b) {
				c := b[i]
				if c == '"' {
					return i + 1, out, nil
				}
				if c != '\\' {
					out = append(out, c)
					i++
					continue
				}
				if i+1 >= len(b) {
					break
				}
				switch e := b[i+1]; e {
				case 'n':
					out = append(out, '\n')
				case 't':
					out = append(out, '\t')
				case 'r':
					out = append(out, '\r')
				default:
					out = append(out, e)
				}
				i += 2
			}
			return 0, nil, fmt.Errorf("logfmt at byte %d: unterminated quote", start-1)
		}
		i++
	}
	return 0, nil, fmt.Errorf("logfmt at byte %d: unterminated quote", start-1)
}

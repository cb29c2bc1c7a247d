package ingest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluiceio/sluice/rules"
)

// InfluxDecoder decodes one InfluxDB line-protocol line
// (weather,site=a,device=d7 temp=21.5,hum=40i,ok=t,msg="x" 1732500000000000000):
// the measurement becomes the string field "measurement", each tag a string
// field, each field a number (floats, 40i, 40u), bool or string field, and
// the timestamp, when there is one, the record's time (nanoseconds unless
// Precision says us, ms or s). Escapes (\, \= \space; \" \\ in strings) are
// honoured.
type InfluxDecoder struct {
	names interner
	unit  int64 // nanoseconds per timestamp unit
}

func newInfluxDecoder(o DecoderOptions) (Decoder, error) {
	d := &InfluxDecoder{}
	switch o.Precision {
	case "", "ns":
		d.unit = 1
	case "us":
		d.unit = 1e3
	case "ms":
		d.unit = 1e6
	case "s":
		d.unit = 1e9
	default:
		return nil, fmt.Errorf("influx precision %q: want ns, us, ms or s", o.Precision)
	}
	return d, nil
}

func influxErr(i int, what string) error { return fmt.Errorf("influx at byte %d: %s", i, what) }

// Decode appends the measurement, tags and fields of payload to r.
func (d *InfluxDecoder) Decode(payload []byte, r *rules.Record) error {
	b := payload
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	i, m := influxToken(b, 0, false)
	if len(m) == 0 {
		return influxErr(i, "expected a measurement")
	}
	r.Fields = append(r.Fields, rules.Field{Name: "measurement", Value: rules.String(unsafeString(m))})
	for i < len(b) && b[i] == ',' {
		j, k := influxToken(b, i+1, true)
		if len(k) == 0 || j >= len(b) || b[j] != '=' {
			return influxErr(j, "expected tag=value")
		}
		j, v := influxToken(b, j+1, true)
		if len(v) == 0 {
			return influxErr(j, "empty tag value")
		}
		r.Fields = append(r.Fields, rules.Field{Name: d.names.intern(k), Value: rules.String(unsafeString(v))})
		i = j
	}
	if i >= len(b) || b[i] != ' ' {
		return influxErr(i, "expected a space before the fields")
	}
	for i < len(b) && b[i] == ' ' {
		i++
	}
	for n := 0; ; n++ {
		j, k := influxToken(b, i, true)
		if len(k) == 0 || j >= len(b) || b[j] != '=' {
			return influxErr(j, "expected field=value")
		}
		j++
		var v rules.Value
		if j < len(b) && b[j] == '"' {
			end, s, err := influxString(b, j+1)
			if err != nil {
				return err
			}
			v, j = rules.String(unsafeString(s)), end
		} else {
			start := j
			for j < len(b) && b[j] != ',' && b[j] != ' ' {
				j++
			}
			var ok bool
			if v, ok = influxValue(b[start:j]); !ok {
				return influxErr(start, fmt.Sprintf("bad field value %q", b[start:j]))
			}
		}
		r.Fields = append(r.Fields, rules.Field{Name: d.names.intern(k), Value: v})
		i = j
		if i >= len(b) || b[i] != ',' {
			break
		}
		i++
	}
	if i >= len(b) {
		return nil
	}
	if b[i] != ' ' {
		return influxErr(i, "expected a space before the timestamp")
	}
	for i < len(b) && b[i] == ' ' {
		i++
	}
	ts, err := strconv.ParseInt(unsafeString(b[i:]), 10, 64)
	if err != nil {
		return influxErr(i, "bad timestamp")
	}
	if d.unit > 1 && (ts > (1<<63-1)/d.unit || ts < -(1<<63-1)/d.unit) {
		return influxErr(i, "timestamp out of range")
	}
	r.Time = time.Unix(0, ts*d.unit).UTC()
	return nil
}

// influxToken reads a name or tag value up to an unescaped ',', ' ' (or '='
// when eq); the token aliases b unless it held escapes.
func influxToken(b []byte, i int, eq bool) (int, []byte) {
	start, escaped := i, false
	for i < len(b) {
		c := b[i]
		if c == '\\' && i+1 < len(b) && (b[i+1] == ',' || b[i+1] == ' ' || b[i+1] == '=') {
			escaped = true
			i += 2
			continue
		}
		if c == ',' || c == ' ' || (eq && c == '=') {
			break
		}
		i++
	}
	tok := b[start:i]
	if !escaped {
		return i, tok
	}
	out := make([]byte, 0, len(tok))
	for j := 0; j < len(tok); j++ {
		if tok[j] == '\\' && j+1 < len(tok) && (tok[j+1] == ',' || tok[j+1] == ' ' || tok[j+1] == '=') {
			j++
		}
		out = append(out, tok[j])
	}
	return i, out
}

// influxString reads a string field value after its opening quote.
func influxString(b []byte, i int) (int, []byte, error) {
	start := i
	var out []byte
	for i < len(b) {
		switch b[i] {
		case '"':
			if out == nil {
				return i + 1, b[start:i], nil
			}
			return i + 1, append(out, b[start:i]...), nil
		case '\\':
			if i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\') {
				out = append(out, b[start:i]...)
				out = append(out, b[i+1])
				i += 2
				start = i
				continue
			}
		}
		i++
	}
	return 0, nil, influxErr(start-1, "unterminated string")
}

// influxValue parses a non-string field value: 1.5, 1i, 1u, or a bool.
func influxValue(v []byte) (rules.Value, bool) {
	switch string(v) {
	case "t", "T", "true", "True", "TRUE":
		return rules.Bool(true), true
	case "f", "F", "false", "False", "FALSE":
		return rules.Bool(false), true
	}
	if n := len(v); n > 1 && (v[n-1] == 'i' || v[n-1] == 'u') {
		if v[n-1] == 'u' {
			u, err := strconv.ParseUint(unsafeString(v[:n-1]), 10, 64)
			return rules.Number(float64(u)), err == nil
		}
		k, err := strconv.ParseInt(unsafeString(v[:n-1]), 10, 64)
		return rules.Number(float64(k)), err == nil
	}
	f, ok := parseNumber(v)
	return rules.Number(f), ok
}

package ingest

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluiceio/sluice/rules"
)

// TimeFormat says how an event-time field is written.
type TimeFormat uint8

// Event-time formats. TimeAuto reads RFC 3339 strings and numbers by their
// magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17
// microseconds, else nanoseconds (so a year between 1973 and 5138 reads
// right in any unit).
const (
	TimeAuto TimeFormat = iota
	TimeSeconds
	TimeMillis
	TimeMicros
	TimeNanos
	TimeRFC3339
)

var timeFormats = map[string]TimeFormat{"": TimeAuto, "auto": TimeAuto, "s": TimeSeconds, "ms": TimeMillis,
	"us": TimeMicros, "µs": TimeMicros, "ns": TimeNanos, "rfc3339": TimeRFC3339}

// ParseTimeFormat reads auto (or ""), s, ms, us (µs), ns or rfc3339.
func ParseTimeFormat(s string) (TimeFormat, error) {
	f, ok := timeFormats[s]
	if !ok {
		return 0, fmt.Errorf("format %q is not auto, s, ms, us, ns or rfc3339", s)
	}
	return f, nil
}

// EventTime takes the record's time from a field.
type EventTime struct {
	Field  string
	Format TimeFormat
}

// minTimeNs and maxTimeNs bound an event time in unix nanoseconds: an
// int64 of them spans the years 1678 to 2262.
const (
	minTimeNs = -9.2e18
	maxTimeNs = 9.2e18
)

// apply sets r.Time from the field and rewrites the field to unix
// milliseconds (a number, fractions for finer units), which rules'
// event_time reads whatever the input's unit was. A missing or null field
// leaves the arrival time; a field that is no time is an error.
func (e *EventTime) apply(r *rules.Record) error {
	i := fieldIndex(r, e.Field)
	if i < 0 || r.Fields[i].Kind == rules.KindNull {
		return nil
	}
	v := r.Fields[i].Value
	ns, ok := e.parse(v)
	if !ok {
		return fmt.Errorf("field %s = %s is not a time (%s)", e.Field, valueText(v), e.want())
	}
	r.Time = time.Unix(0, ns).UTC()
	r.Fields[i].Value = rules.Number(float64(ns/1e6) + float64(ns%1e6)/1e6)
	return nil
}

func (e *EventTime) want() string {
	switch e.Format {
	case TimeSeconds:
		return "want unix seconds"
	case TimeMillis:
		return "want unix milliseconds"
	case TimeMicros:
		return "want unix microseconds"
	case TimeNanos:
		return "want unix nanoseconds"
	case TimeRFC3339:
		return "want RFC 3339"
	}
	return "want RFC 3339 or unix seconds, ms, µs or ns"
}

// parse returns unix nanoseconds.
func (e *EventTime) parse(v rules.Value) (int64, bool) {
	switch v.Kind {
	case rules.KindString:
		if e.Format == TimeRFC3339 || e.Format == TimeAuto {
			if t, ok := parseRFC3339(v.Str); ok {
				return t.UnixNano(), inRange(t)
			}
			if e.Format == TimeRFC3339 {
				return 0, false
			}
		}
		f, ok := parseNumber(unsafeBytes(v.Str))
		if !ok {
			return 0, false
		}
		return e.epoch(f)
	case rules.KindNumber:
		if e.Format == TimeRFC3339 {
			return 0, false
		}
		return e.epoch(v.Num)
	}
	return 0, false
}

func inRange(t time.Time) bool {
	return t.Year() > 1678 && t.Year() < 2262
}

func (e *EventTime) epoch(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	var scale int64 = 1
	switch e.Format {
	case TimeSeconds:
		scale = 1e9
	case TimeMillis:
		scale = 1e6
	case TimeMicros:
		scale = 1e3
	case TimeNanos:
	default:
		switch a := math.Abs(f); {
		case a < 1e11:
			scale = 1e9
		case a < 1e14:
			scale = 1e6
		case a < 1e17:
			scale = 1e3
		}
	}
	if ns := f * float64(scale); ns < minTimeNs || ns > maxTimeNs {
		return 0, false
	}
	// Whole units in integers, so that 1795597262345 ms is that many ms
	// exactly; only the fraction goes through a float product.
	whole := math.Trunc(f)
	return int64(whole)*scale + int64(math.Round((f-whole)*float64(scale))), true
}

// parseRFC3339 reads what time.Parse(time.RFC3339Nano) reads on its fast
// path (2006-01-02T15:04:05.999999999Z07:00) without allocating a zone for
// numeric offsets: the result is in UTC.
func parseRFC3339(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05") {
		return time.Time{}, false
	}
	ok := true
	num := func(b string, lo, hi int) int {
		n := 0
		for i := 0; i < len(b); i++ {
			if b[i] < '0' || b[i] > '9' {
				ok = false
				return 0
			}
			n = n*10 + int(b[i]-'0')
		}
		if n < lo || n > hi {
			ok = false
		}
		return n
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	if !ok {
		return time.Time{}, false
	}
	day := num(s[8:10], 1, daysIn(time.Month(month), year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	s = s[19:]
	nsec := 0
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		scale := 100000000
		for i := 1; i < n && i <= 9; i++ {
			nsec += int(s[i]-'0') * scale
			scale /= 10
		}
		s = s[n:]
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if len(s) == 1 && s[0] == 'Z' {
		return t, true
	}
	if len(s) != len("-07:00") || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
		return time.Time{}, false
	}
	hh := num(s[1:3], 0, 23)
	mm := num(s[4:6], 0, 59)
	if !ok {
		return time.Time{}, false
	}
	off := time.Duration(hh*60+mm) * time.Minute
	if s[0] == '-' {
		off = -off
	}
	return t.Add(-off), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int((m-1)%7%2)
}

// valueText shows a value in an error message.
func valueText(v rules.Value) string {
	switch v.Kind {
	case rules.KindString:
		s := v.Str
		if len(s) > 64 {
			s = s[:64] + "…"
		}
		return strconv.Quote(s)
	case rules.KindNull:
		return "null"
	}
	return string(v.AppendText(nil))
}

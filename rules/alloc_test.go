package rules

import (
	"testing"
	"time"
)

// allocsPerRecord feeds rs in a loop after a warm-up and returns the
// allocations per Process call, as the pipeline makes it (out reused).
func allocsPerRecord(p *Plan, rs []*Record) float64 {
	var out []Output
	i := 0
	step := func() {
		out = p.Process(rs[i%len(rs)], out[:0])
		i++
	}
	for range 2 * len(rs) {
		step()
	}
	return testing.AllocsPerRun(2000, step)
}

func TestOperatorsDoNotAllocatePerRecord(t *testing.T) {
	cases := map[string]Spec{
		"stateless":   {Where: "temperature > 0 AND device LIKE 'pump%'", Select: []SelectItem{{"device", "device"}, {"f", "round(temperature * 9 / 5 + 32, 1)"}, {"hot", "CASE WHEN temperature > 30 THEN 'hot' ELSE 'ok' END"}}},
		"passthrough": {Select: []SelectItem{{"*", "*"}}, Drop: []string{"humidity"}},
		"aggregates":  {GroupBy: []string{"device"}, Tumbling: time.Hour, Select: allAggsOf("temperature", "device")},
		"alert":       {GroupBy: []string{"device"}, Alert: &Alert{When: "temperature > 1000"}, Select: []SelectItem{{"t", "temperature"}}},
		"deadband":    {GroupBy: []string{"device"}, Deadband: &Deadband{Abs: 100}, Select: []SelectItem{{"t", "temperature"}}},
		"session":     {GroupBy: []string{"device"}, Window: Window{Kind: Session, Gap: time.Hour}, Select: []SelectItem{{"a", "avg(temperature)"}}},
	}
	var rs []*Record
	for i := range 8 {
		r := rec("device", []string{"pump-1", "pump-2"}[i%2], "temperature", 21.5+float64(i%3), "humidity", 40.0)
		r.Time = time.Unix(1000, 0)
		rs = append(rs, r)
	}
	for name, spec := range cases {
		spec.Name = name
		p := mustCompile(t, spec)
		if a := allocsPerRecord(p, rs); a != 0 {
			t.Errorf("%s: %v allocations per record", name, a)
		}
	}
}

func allAggsOf(v, s string) []SelectItem {
	return []SelectItem{{"n", "count(*)"}, {"sum", "sum(" + v + ")"}, {"avg", "avg(" + v + ")"}, {"min", "min(" + v + ")"},
		{"max", "max(" + v + ")"}, {"first", "first(" + v + ")"}, {"last", "last(" + s + ")"}, {"sd", "stddev(" + v + ")"},
		{"p95", "quantile(" + v + ", 0.95)"}, {"distinct", "count_distinct(" + s + ")"}, {"rate", "rate(" + v + ")"}}
}

func TestMoreExpressions(t *testing.T) {
	r := rec("t", 42.5, "device", "Pump-7", "s", " x ", "ts", "2026-11-25T09:30:00Z", "n", 3)
	r.Time = t0
	r.Topic = "sensors/site-a/pump-7/temp"
	cases := []struct {
		src  string
		want Value
	}{
		{"CASE WHEN t > 40 THEN 'hot' WHEN t > 20 THEN 'warm' ELSE 'cold' END", String("hot")},
		{"CASE n WHEN 1 THEN 'one' WHEN 3 THEN 'three' END", String("three")},
		{"CASE WHEN t < 0 THEN 1 END", Null},
		{"lower(device) || upper(device) = 'x'", Bool(false)},
		{"lower(device)", String("pump-7")},
		{"upper(device)", String("PUMP-7")},
		{"trim(s)", String("x")},
		{"length(device)", Number(6)},
		{"concat(device, '/', n)", String("Pump-7/3")},
		{"substr(device, 2, 3)", String("ump")},
		{"substr(device, 5)", String("-7")},
		{"replace(device, '-', '_')", String("Pump_7")},
		{"starts_with(device, 'Pu') AND ends_with(device, '7') AND contains(device, 'mp')", Bool(true)},
		{"split_part(device, '-', 2)", String("7")},
		{"topic()", String("sensors/site-a/pump-7/temp")},
		{"topic(2)", String("site-a")},
		{"topic(9)", String("")},
		{"event_time()", Number(float64(t0.UnixMilli()))},
		{"parse_time(ts)", Number(float64(t0.Add(30 * time.Minute).UnixMilli()))},
		{"hour(ts) * 100 + minute(parse_time(ts))", Number(930)},
		{"weekday(event_time())", Number(3)},
		{"format_time(event_time())", String("2026-11-25T09:00:00Z")},
		{"pow(2, 10) + sign(-3) + clamp(t, 0, 40)", Number(1063)},
		{"greatest(1, t, missing) - least(5, 2)", Number(40.5)},
		{"nullif(n, 3) IS NULL", Bool(true)},
		{"number('12.5') + number(true)", Number(13.5)},
		{"string(n) = '3'", Bool(true)},
		{"exp(0) + ln(1) + log10(100)", Number(3)},
	}
	for _, c := range cases {
		e, err := CompileExpr(c.src)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if got := e.Eval(r); got != c.want {
			t.Errorf("%s = %+v, want %+v", c.src, got, c.want)
		}
	}
}

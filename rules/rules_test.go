package rules

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func rec(fields ...any) *Record {
	r := &Record{}
	for i := 0; i+1 < len(fields); i += 2 {
		name := fields[i].(string)
		switch v := fields[i+1].(type) {
		case float64:
			r.Fields = append(r.Fields, Field{name, Number(v)})
		case int:
			r.Fields = append(r.Fields, Field{name, Number(float64(v))})
		case string:
			r.Fields = append(r.Fields, Field{name, String(v)})
		case bool:
			r.Fields = append(r.Fields, Field{name, Bool(v)})
		case nil:
			r.Fields = append(r.Fields, Field{name, Null})
		}
	}
	return r
}

func TestExprEval(t *testing.T) {
	r := rec("temperature", 42.5, "device", "pump-7", "ok", true, "n", 3, "gps.lat", 51.5, "none", nil)
	cases := []struct {
		src  string
		want Value
	}{
		{"temperature > 30", Bool(true)},
		{"temperature > -40 && temperature < 150", Bool(true)},
		{"temperature > 30 AND device LIKE 'pump%'", Bool(true)},
		{"device LIKE 'pump_7'", Bool(true)},
		{"device NOT LIKE 'valve%'", Bool(true)},
		{"temperature BETWEEN 40 AND 45", Bool(true)},
		{"temperature NOT BETWEEN 40 AND 45", Bool(false)},
		{"device IN ('a', 'pump-7')", Bool(true)},
		{"n NOT IN (1, 2)", Bool(true)},
		{"temperature * 2 + 1", Number(86)},
		{"-temperature", Number(-42.5)},
		{"n % 2", Number(1)},
		{"n / 0", Null},
		{"missing > 1", Bool(false)},
		{"missing IS NULL", Bool(true)},
		{"none IS NULL", Bool(true)},
		{"device IS NOT NULL", Bool(true)},
		{"NOT ok", Bool(false)},
		{"!ok || n = 3", Bool(true)},
		{"n == 3 and n <> 4", Bool(true)},
		{"`gps.lat` > 50", Bool(true)},
		{"gps.lat > 50", Bool(true)},
		{"round(temperature / 3, 2)", Number(14.17)},
		{"abs(-2) + floor(1.7) + ceil(1.2)", Number(5)},
		{"coalesce(missing, none, device)", String("pump-7")},
		{"if(temperature > 40, 'hot', 'ok')", String("hot")},
		{"'it''s'", String("it's")},
		{"1e3 + .5", Number(1000.5)},
		{"device = 'pump-7'", Bool(true)},
		{"device < 'q'", Bool(true)},
		{"device = 3", Bool(false)},
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

func TestExprErrorsHavePositions(t *testing.T) {
	cases := []struct{ src, want string }{
		{"temperature >", "1:14: unexpected end of expression"},
		{"temperature > 'x", "1:15: unterminated string"},
		{"a = 1 )", "1:7: unexpected \")\" after the expression"},
		{"foo(1)", "1:1: unknown function foo()"},
		{"avg(x) > 1", "1:1: aggregate avg() is only allowed in the select or having of a windowed rule"},
		{"a ? b", "1:3: unexpected character '?'"},
		{"a BETWEEN 1 OR 2", "1:13: expected AND in BETWEEN"},
		{"round()", "1:1: round() takes 1 to 2 arguments, got 0"},
		{"a = 1 AND\n  b >", "2:6: unexpected end of expression"},
	}
	for _, c := range cases {
		_, err := CompileExpr(c.src)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v, want %q", c.src, err, c.want)
		}
		var pe *PosError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("%q: not a PosError", c.src)
		}
	}
}

func tumblingSpec() Spec {
	return Spec{
		Name:     "t",
		Where:    "temperature > -40",
		GroupBy:  []string{"device"},
		Tumbling: 10 * time.Second,
		Select: []SelectItem{
			{"device", "device"},
			{"avg_t", "avg(temperature)"},
			{"max_t", "max(temperature)"},
			{"min_t", "min(temperature)"},
			{"sum_t", "sum(temperature)"},
			{"n", "count(*)"},
			{"spread", "max(temperature) - min(temperature)"},
		},
	}
}

func TestTumblingWindow(t *testing.T) {
	p, err := Compile(tumblingSpec())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var out []Output
	feed := func(at time.Duration, dev string, temp float64) {
		r := rec("device", dev, "temperature", temp)
		r.Time = t0.Add(at)
		out = p.Process(r, out)
	}
	feed(1*time.Second, "a", 10)
	feed(2*time.Second, "a", 20)
	feed(3*time.Second, "b", 5)
	feed(4*time.Second, "a", -50) // filtered
	if len(out) != 0 {
		t.Fatalf("outputs before the window closed: %v", out)
	}
	out = p.Tick(t0.Add(9*time.Second), out)
	if len(out) != 0 {
		t.Fatalf("window closed early")
	}
	feed(11*time.Second, "a", 1) // next window: closes the first
	if len(out) != 2 {
		t.Fatalf("got %d outputs, want 2", len(out))
	}
	byDev := map[string]Output{}
	for _, o := range out {
		byDev[o.Key[0].Str] = o
	}
	a := byDev["a"]
	want := []Field{{"device", String("a")}, {"avg_t", Number(15)}, {"max_t", Number(20)}, {"min_t", Number(10)}, {"sum_t", Number(30)}, {"n", Number(2)}, {"spread", Number(10)}}
	for i, f := range want {
		if a.Values[i] != f {
			t.Errorf("a value %d = %+v, want %+v", i, a.Values[i], f)
		}
	}
	if !a.WindowStart.Equal(t0) || !a.WindowEnd.Equal(t0.Add(10*time.Second)) || !a.Time.Equal(a.WindowEnd) {
		t.Errorf("window %v–%v ts %v", a.WindowStart, a.WindowEnd, a.Time)
	}
	if byDev["b"].Values[5] != (Field{"n", Number(1)}) {
		t.Errorf("b: %+v", byDev["b"].Values)
	}
	if p.Stats.Filtered != 1 || p.Stats.Processed != 5 || p.Stats.Emitted != 2 {
		t.Errorf("stats %+v", p.Stats)
	}
	out = p.Tick(t0.Add(20*time.Second), out[:0])
	if len(out) != 1 || out[0].Values[5].Num != 1 {
		t.Fatalf("second window: %+v", out)
	}
	got := string(out[0].AppendJSON(nil, []Field{{"site", String("x")}}))
	wantJSON := `{"rule":"t","ts":"2026-11-25T09:00:20Z","window":{"start":"2026-11-25T09:00:10Z","end":"2026-11-25T09:00:20Z"},"key":{"device":"a"},"values":{"device":"a","avg_t":1,"max_t":1,"min_t":1,"sum_t":1,"n":1,"spread":0},"tags":{"site":"x"}}`
	if got != wantJSON {
		t.Errorf("json\n got %s\nwant %s", got, wantJSON)
	}
}

func TestCheckpointRestore(t *testing.T) {
	spec := tumblingSpec()
	p, _ := Compile(spec)
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		r := rec("device", []string{"a", "b", "c"}[i%3], "temperature", float64(i))
		r.Time = t0.Add(time.Duration(i) * 100 * time.Millisecond)
		p.Process(r, nil)
	}
	sc := p.Checkpoint()
	if sc.Reset || len(sc.Puts) != 4 { // meta and three groups
		t.Fatalf("checkpoint: reset %v, %d puts", sc.Reset, len(sc.Puts))
	}
	if p.Dirty() {
		t.Fatal("dirty after checkpoint")
	}
	saved := sc.Puts
	q, _ := Compile(spec)
	if err := q.Restore(saved); err != nil {
		t.Fatal(err)
	}
	a := p.Flush(nil)
	b := q.Flush(nil)
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("flush: %d and %d outputs", len(a), len(b))
	}
	sum := func(os []Output) (s float64) {
		for _, o := range os {
			s += o.Values[4].Num*1000 + o.Values[5].Num
		}
		return
	}
	if sum(a) != sum(b) {
		t.Errorf("restored plan differs: %v vs %v", sum(a), sum(b))
	}
	store := newStore()
	store.apply(sc)
	store.apply(p.Checkpoint())
	if n := store.live(); n != 0 {
		t.Errorf("after the window closed %d groups are still saved", n)
	}
	// A changed rule (one aggregate fewer) does not take the old state.
	spec.Select = spec.Select[:3]
	r, _ := Compile(spec)
	if err := r.Restore(saved); !errors.Is(err, ErrBadState) {
		t.Errorf("restore into a changed rule: %v", err)
	}
}

func TestSpecErrors(t *testing.T) {
	cases := []struct {
		spec  Spec
		field string
		msg   string
	}{
		{Spec{Name: "x", Where: "a >"}, "where", "unexpected end"},
		{Spec{Name: "x", Tumbling: time.Second}, "select", "at least one"},
		{Spec{Name: "x", Tumbling: time.Second, Select: []SelectItem{{"v", "temperature"}}}, "select.v", `field "temperature" must be in group_by`},
		{Spec{Name: "x", Tumbling: time.Second, Select: []SelectItem{{"v", "avg(avg(t))"}}}, "select.v", "inside another aggregate"},
		{Spec{Name: "x", Tumbling: time.Second, Select: []SelectItem{{"v", "sum()"}}}, "select.v", "needs one argument"},
		{Spec{Name: "x", GroupBy: []string{"d"}}, "group_by", "needs a window"},
		{Spec{Name: "x", Tumbling: -1}, "window.tumbling", "must be positive"},
		{Spec{Name: "x", Tumbling: time.Second, Select: []SelectItem{{"n", "count()"}, {"n", "count()"}}}, "select.n", "duplicate"},
	}
	for _, c := range cases {
		_, err := Compile(c.spec)
		var se *SpecError
		if !errors.As(err, &se) || se.Field != c.field || !strings.Contains(se.Error(), c.msg) {
			t.Errorf("%+v: error %v, want field %s with %q", c.spec, err, c.field, c.msg)
		}
	}
}

func TestGroupCap(t *testing.T) {
	s := tumblingSpec()
	s.MaxGroups = 2
	p, _ := Compile(s)
	for _, d := range []string{"a", "b", "c", "a"} {
		r := rec("device", d, "temperature", 1.0)
		r.Time = time.Unix(100, 0)
		p.Process(r, nil)
	}
	if p.Stats.GroupsDropped != 1 {
		t.Errorf("dropped %d, want 1", p.Stats.GroupsDropped)
	}
}

func TestStatelessRule(t *testing.T) {
	p, err := Compile(Spec{Name: "hot", Where: "temperature > 30", Select: []SelectItem{{"device", "device"}, {"f", "temperature * 9 / 5 + 32"}}})
	if err != nil {
		t.Fatal(err)
	}
	out := p.Process(rec("device", "d1", "temperature", 40.0), nil)
	out = p.Process(rec("device", "d2", "temperature", 20.0), out)
	if len(out) != 1 || out[0].Values[1].Num != 104 || out[0].Values[0].Str != "d1" {
		t.Fatalf("%+v", out)
	}
}

func TestProcessDoesNotAllocate(t *testing.T) {
	p, _ := Compile(tumblingSpec())
	r := rec("device", "a", "temperature", 21.5, "humidity", 40.0)
	r.Time = time.Unix(1000, 0)
	p.Process(r, nil)
	p.Checkpoint()
	allocs := testing.AllocsPerRun(1000, func() { p.Process(r, nil) })
	if allocs != 0 {
		t.Errorf("Process allocates %v times per record", allocs)
	}
}

func TestJSONStringEscaping(t *testing.T) {
	got := string(AppendJSONString(nil, "a\"b\\c\n\x01\xff✓"))
	if want := `"a\"b\\c\n\u0001\ufffd✓"`; got != want {
		t.Errorf("got %s want %s", got, want)
	}
	if got := string(Number(math.NaN()).AppendJSON(nil)); got != "null" {
		t.Errorf("NaN: %s", got)
	}
}

func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{"a > 1 AND b LIKE 'x%'", "round(a, 2) BETWEEN 1 AND 2", "coalesce(a, 'x') IN ('x', 'y')", "`a b` IS NOT NULL", "-(-a) % 3"} {
		f.Add(s)
	}
	r := rec("a", 1.5, "b", "xyz")
	f.Fuzz(func(t *testing.T, src string) {
		e, err := CompileExpr(src)
		if err != nil {
			return
		}
		e.Eval(r)
	})
}

func TestLike(t *testing.T) {
	cases := []struct {
		s, pat string
		want   bool
	}{
		{"pump-7", "pump%", true}, {"pump-7", "%7", true}, {"pump-7", "%mp-%", true}, {"pump-7", "p_mp-_", true},
		{"pump-7", "pump", false}, {"", "%", true}, {"", "_", false}, {"abc", "a%c%", true}, {"abc", "%%%", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "%a%a%a%a%a%a%a%a%c", false}, {"xay", "x%y", true}, {"xa", "x%y", false},
	}
	for _, c := range cases {
		if got := likeMatch(c.s, c.pat); got != c.want {
			t.Errorf("%q LIKE %q = %v", c.s, c.pat, got)
		}
	}
}

func TestNumbersReadPlain(t *testing.T) {
	for f, want := range map[float64]string{1795817061935: "1795817061935", 41.2: "41.2", 0: "0", -0.5: "-0.5", 1e21: "1e+21", 1.5e-7: "1.5e-07", 600: "600"} {
		if got := string(Number(f).AppendJSON(nil)); got != want {
			t.Errorf("%v: %s, want %s", f, got, want)
		}
	}
}

// TestNoModelErrorNamesTheModel: a call to a model the options lack fails
// with a NoModelError naming it, in the structured and the SQL form.
func TestNoModelErrorNamesTheModel(t *testing.T) {
	_, err1 := Compile(Spec{Name: "r", Select: []SelectItem{{"y", "predict('m', x)"}}})
	_, err2 := ParseSQL("r", "SELECT predict('m', x) AS y FROM t")
	for _, err := range []error{err1, err2} {
		var nm *NoModelError
		if !errors.As(err, &nm) || nm.Name != "m" {
			t.Errorf("err %v: want a NoModelError for m", err)
		}
	}
}

// TestIdleTicksNeedNoCheckpoint checks that with arrival time a Tick that
// only moves the watermark leaves nothing to checkpoint (an idle agent does
// not write its disk every second), that one closing a window does, and
// that with event time every move of the watermark is saved.
func TestIdleTicksNeedNoCheckpoint(t *testing.T) {
	p, _ := Compile(tumblingSpec())
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	r := rec("device", "a", "temperature", 20.0)
	r.Time = t0.Add(time.Second)
	p.Process(r, nil)
	p.Checkpoint()
	for s := 2; s < 10; s++ {
		if out := p.Tick(t0.Add(time.Duration(s)*time.Second), nil); len(out) != 0 || p.Dirty() {
			t.Fatalf("tick at %ds inside the window: %d outputs, dirty %v", s, len(out), p.Dirty())
		}
	}
	if out := p.Tick(t0.Add(10*time.Second), nil); len(out) != 1 || !p.Dirty() {
		t.Fatalf("tick closing the window: %d outputs, dirty %v; want 1 and dirty", len(out), p.Dirty())
	}
	sc := p.Checkpoint()
	var meta bool
	for _, e := range sc.Puts {
		meta = meta || e.Key == metaKey
	}
	if !meta {
		t.Fatalf("the checkpoint after a close holds no watermark: %+v", sc.Puts)
	}
	if p.Tick(t0.Add(11*time.Second), nil); p.Dirty() {
		t.Fatal("dirty after an idle tick past the close")
	}

	spec := tumblingSpec()
	spec.EventTime = EventTime{Field: "ts", Idle: time.Second}
	e, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	r = rec("device", "a", "temperature", 20.0, "ts", float64(t0.UnixMilli()))
	e.Process(r, nil)
	e.Checkpoint()
	if e.Tick(t0.Add(3*time.Second), nil); !e.Dirty() {
		t.Fatal("event time: a watermark moved by Tick is not saved")
	}
}

package rules

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/rules/ml"
)

// values runs the records through a rule without window and returns the
// named value of each output (NaN for null).
func values(t *testing.T, p *Plan, name string, rs []*Record) []float64 {
	t.Helper()
	var got []float64
	for _, r := range rs {
		for _, o := range p.Process(r, nil) {
			v := math.NaN()
			for _, f := range o.Values {
				if f.Name == name && f.Kind == KindNumber {
					v = f.Num
				}
			}
			got = append(got, v)
		}
	}
	return got
}

func series(dev string, vs ...float64) []*Record {
	rs := make([]*Record, len(vs))
	for i, v := range vs {
		rs[i] = at(time.Duration(i)*time.Second, "d", dev, "v", v)
	}
	return rs
}

func same(a, b float64) bool {
	return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) < 1e-9
}

func TestLearningFunctionValues(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		expr string
		in   []float64
		want []float64
	}{
		// s = 0.5x + 0.5s from the first value.
		{"ewma(v, 0.5)", []float64{10, 20, 20, 0}, []float64{10, 15, 17.5, 8.75}},
		// Over a window of 2: the mean and variance of what came before
		// (weights 1/n until n = 2, then 1/2).
		{"zscore(v, 2)", []float64{1, 3, 3}, []float64{nan, nan, 1}},
		// Holt: level 2 and trend 1 after two values; then
		// level = .5·4 + .5·(2+1) = 3.5, trend = .1·1.5 + .9·1 = 1.05.
		{"forecast(v, 1)", []float64{1, 2, 4}, []float64{nan, 3, 3.5 + 1.05}},
		{"forecast(v, 2)", []float64{1, 2}, []float64{nan, 4}},
		// Holt-Winters with a season of 2: the first season sets level 2
		// and components -1, +1; the forecast one ahead is 2 - 1.
		{"forecast(v, 1, 2)", []float64{1, 3}, []float64{nan, 1}},
	}
	for _, c := range cases {
		p := mustCompile(t, Spec{Name: "x", Select: []SelectItem{{"y", c.expr}}})
		got := values(t, p, "y", series("a", c.in...))
		for i := range c.want {
			if !same(got[i], c.want[i]) {
				t.Errorf("%s over %v = %v, want %v", c.expr, c.in, got, c.want)
				break
			}
		}
	}
}

func TestLearningFunctionsKeepStatePerKey(t *testing.T) {
	p := mustCompile(t, Spec{Name: "x", GroupBy: []string{"d"}, Select: []SelectItem{{"e", "ewma(v, 0.5)"}}})
	rs := []*Record{at(0, "d", "a", "v", 10.0), at(0, "d", "b", "v", 100.0), at(0, "d", "a", "v", 20.0), at(0, "d", "b", "v", 0.0)}
	got := values(t, p, "e", rs)
	want := []float64{10, 100, 15, 50}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ewma per key = %v, want %v", got, want)
		}
	}
	if p.StateSize() == 0 || p.Stats.Processed != 4 {
		t.Errorf("state size %d, processed %d", p.StateSize(), p.Stats.Processed)
	}
}

func TestAnomalyScoreFindsASpike(t *testing.T) {
	p := mustCompile(t, Spec{Name: "x", Select: []SelectItem{{"a", "anomaly_score(v)"}}})
	var vs []float64
	for i := range 600 {
		vs = append(vs, 50+10*math.Sin(float64(i)/5))
	}
	vs[500] = 120
	got := values(t, p, "a", series("a", vs...))
	if got[500] != 1 {
		t.Errorf("spike scored %v, want 1", got[500])
	}
	for i := 400; i < 500; i++ {
		if got[i] != 0 {
			t.Fatalf("regular point %d scored %v, want 0", i, got[i])
		}
	}
}

func TestChangepointFiresOnce(t *testing.T) {
	p := mustCompile(t, Spec{Name: "x", Select: []SelectItem{{"c", "changepoint(v)"}}})
	var vs []float64
	for i := range 200 {
		v := 10 + float64(i%5)
		if i >= 100 {
			v += 20
		}
		vs = append(vs, v)
	}
	got := values(t, p, "c", series("a", vs...))
	var at []int
	for i, v := range got {
		if v == 1 {
			at = append(at, i)
		}
	}
	if len(at) != 1 || at[0] < 100 || at[0] > 103 {
		t.Errorf("changes detected at %v, want one at 100..103", at)
	}
}

func TestLearningFunctionErrors(t *testing.T) {
	cases := map[string]Spec{
		"use it in the select or having": {Name: "x", Where: "anomaly_score(v) > 0.5", Select: []SelectItem{{"v", "v"}}},
		"needs a constant number":        {Name: "x", Select: []SelectItem{{"e", "ewma(v, v)"}}},
		"alpha must be in (0, 1]":        {Name: "x", Select: []SelectItem{{"e", "ewma(v, 2)"}}},
		"takes 2 to 3 arguments":         {Name: "x", Select: []SelectItem{{"f", "forecast(v)"}}},
		"season length must be":          {Name: "x", Select: []SelectItem{{"f", "forecast(v, 1, 100000)"}}},
		"inside an aggregate":            {Name: "x", Tumbling: time.Minute, Select: []SelectItem{{"a", "avg(zscore(v))"}}},
		"no model \"m\"":                 {Name: "x", Select: []SelectItem{{"p", "predict('m', v)"}}},
	}
	for want, s := range cases {
		_, err := Compile(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", s.Select[0].Expr, err, want)
		}
	}
	if _, err := CompileExpr("zscore(v)"); err == nil || !strings.Contains(err.Error(), "learns per group key") {
		t.Errorf("CompileExpr with a learning function: %v", err)
	}
}

func TestLearningFunctionsDoNotAllocatePerRecord(t *testing.T) {
	m, err := ml.ParseModel("m", []byte(`{"kind":"logistic","features":["t"],"weights":[0.5],"intercept":-10,"classes":["ok","hot"]}`))
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "x", GroupBy: []string{"device"}, Select: []SelectItem{{"a", "anomaly_score(temperature)"},
		{"z", "zscore(temperature)"}, {"e", "ewma(temperature, 0.1)"}, {"f", "forecast(temperature, 2, 4)"},
		{"c", "changepoint(temperature)"}, {"p", "predict('m', temperature)"}, {"k", "classify('m', temperature)"}}}
	p, err := CompileWith(spec, Options{Models: map[string]*ml.Model{"m": m}})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*Record
	for i := range 8 {
		r := rec("device", []string{"pump-1", "pump-2"}[i%2], "temperature", 21.5+float64(i%3))
		r.Time = time.Unix(1000, 0)
		rs = append(rs, r)
	}
	if a := allocsPerRecord(p, rs); a != 0 {
		t.Errorf("%v allocations per record", a)
	}
}

func TestPredictAndClassifyInRules(t *testing.T) {
	lin, err := ml.ParseModel("lin", []byte(`{"kind":"linear","features":["a","b"],"weights":[2,-1],"intercept":0.5}`))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ml.ParseModel("lg", []byte(`{"kind":"logistic","features":["a"],"weights":[1],"intercept":-1,"classes":["low","high"]}`))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Models: map[string]*ml.Model{"lin": lin, "lg": lg}}
	p, err := CompileWith(Spec{Name: "x", Where: "classify('lg', a) = 'high'",
		Select: []SelectItem{{"y", "predict('lin', a, b)"}, {"p", "predict('lg', a)"}}}, o)
	if err != nil {
		t.Fatal(err)
	}
	out := p.Process(rec("a", 3.0, "b", 1.0), nil)
	// 2·3 - 1 + 0.5 = 5.5; σ(3 - 1) = 1/(1+e^-2).
	if len(out) != 1 || out[0].Values[0].Num != 5.5 || !same(out[0].Values[1].Num, 1/(1+math.Exp(-2))) {
		t.Errorf("outputs %v", render(out))
	}
	if out := p.Process(rec("a", 0.5, "b", 1.0), nil); len(out) != 0 {
		t.Errorf("class low passed the where: %v", render(out))
	}
	// A missing input makes a linear model's prediction null.
	q, err := CompileWith(Spec{Name: "x", Select: []SelectItem{{"y", "predict('lin', a, b)"}}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if out := q.Process(rec("a", 1.0), nil); out[0].Values[0].Kind != KindNull {
		t.Errorf("missing input: %v", render(out))
	}
	for src, want := range map[string]string{
		"predict('lin', a)":     "takes 2 inputs [a b], got 1",
		"classify('lin', a, b)": "is a regression; use predict()",
		"predict(a, b)":         "takes a model name (a string constant)",
	} {
		if _, err := CompileWith(Spec{Name: "x", Select: []SelectItem{{"y", src}}}, o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
	if _, err := ParseSQLWith("s", "SELECT predict('lin', a, b) AS y FROM t", o); err != nil {
		t.Errorf("SQL with a model: %v", err)
	}
}

// TestHavingFiltersLearnedValues: a rule without window whose select learns
// keeps only the outputs its having accepts, and the learning sees every
// record (the filtered ones included), so the kept outputs are exactly those
// of the rule without having that pass the condition.
func TestHavingFiltersLearnedValues(t *testing.T) {
	vs := []float64{10, 10.1, 9.9, 10, 10.2, 9.8, 10, 30, 10.1, 9.9, 10, -5, 10}
	all := mustCompile(t, Spec{Name: "z", GroupBy: []string{"d"}, Select: []SelectItem{{"z", "zscore(v, 5)"}, {"v", "v"}}})
	kept := mustCompile(t, Spec{Name: "z", GroupBy: []string{"d"}, Select: []SelectItem{{"z", "zscore(v, 5)"}, {"v", "v"}}, Having: "abs(z) > 3 AND v <> 0"})
	var want []float64
	for _, z := range values(t, all, "z", series("a", vs...)) {
		if !math.IsNaN(z) && math.Abs(z) > 3 {
			want = append(want, z)
		}
	}
	got := values(t, kept, "z", series("a", vs...))
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for i := range want {
		if !same(got[i], want[i]) {
			t.Errorf("output %d: z %v, want %v", i, got[i], want[i])
		}
	}
	if f := kept.Stats.Filtered; f != uint64(len(vs)-len(want)) {
		t.Errorf("filtered %d, want %d", f, len(vs)-len(want))
	}
	// A rule that learns nothing still filters with where.
	if _, err := Compile(Spec{Name: "x", Select: []SelectItem{{"v", "v"}}, Having: "v > 1"}); err == nil || !strings.Contains(err.Error(), "needs a window; use where") {
		t.Errorf("having without window or learning: %v", err)
	}
}

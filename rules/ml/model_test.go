package ml

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// xgbBinary is an XGBoost dump (binary:logistic) of two trees over
// features f0, f1, with the extra keys XGBoost writes.
const xgbBinary = `{"kind":"trees","features":["temp","vib"],"objective":"binary:logistic","base_score":0.5,
 "classes":["ok","fault"],
 "trees":[
  {"nodeid":0,"depth":0,"split":"f0","split_condition":50,"yes":1,"no":2,"missing":2,"gain":3.1,"cover":100,"children":[
    {"nodeid":1,"leaf":-0.4,"cover":60},
    {"nodeid":2,"depth":1,"split":"vib","split_condition":0.2,"yes":3,"no":4,"missing":3,"children":[
      {"nodeid":3,"leaf":0.1},{"nodeid":4,"leaf":0.9}]}]},
  {"nodeid":0,"leaf":0.05}
 ]}`

func TestTreesEvaluateExactly(t *testing.T) {
	m, err := ParseModel("m", []byte(xgbBinary))
	if err != nil {
		t.Fatal(err)
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	nan := math.NaN()
	cases := []struct {
		x     []float64
		p     float64
		class int
	}{
		{[]float64{40, 1}, sig(-0.4 + 0.05), 0},  // temp < 50: left leaf
		{[]float64{60, 0.1}, sig(0.1 + 0.05), 1}, // vib < 0.2
		{[]float64{60, 0.5}, sig(0.9 + 0.05), 1}, // vib >= 0.2
		{[]float64{nan, 0.5}, sig(0.9 + 0.05), 1},
		{[]float64{60, nan}, sig(0.1 + 0.05), 1},
		{[]float64{50, 0.2}, sig(0.9 + 0.05), 1}, // equal goes to no
	}
	s := m.Scratch()
	for _, c := range cases {
		p, class := m.Eval(c.x, s)
		if math.Abs(p-c.p) > 1e-12 || class != c.class {
			t.Errorf("Eval(%v) = %v, %d; want %v, %d", c.x, p, class, c.p, c.class)
		}
	}
	if l, ok := m.Label(1); !ok || l != "fault" {
		t.Errorf("label 1 = %q", l)
	}
}

func TestMultiClassAndRegressionTrees(t *testing.T) {
	// Two rounds of three classes: tree i belongs to class i % 3.
	leaf := func(v string) string { return `{"nodeid":0,"leaf":` + v + `}` }
	spec := `{"kind":"trees","features":["a"],"objective":"multi:softprob","num_class":3,"trees":[` +
		strings.Join([]string{leaf("0.1"), leaf("0.5"), leaf("0.2"), leaf("0.1"), leaf("0.4"), leaf("-0.2")}, ",") + `]}`
	m, err := ParseModel("multi", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	p, class := m.Eval([]float64{1}, m.Scratch())
	// margins 0.2, 0.9, 0: softmax of class 1.
	want := math.Exp(0.9) / (math.Exp(0.2) + math.Exp(0.9) + math.Exp(0))
	if class != 1 || math.Abs(p-want) > 1e-12 {
		t.Errorf("multi: %v, %d; want %v, 1", p, class, want)
	}
	r, err := ParseModel("reg", []byte(`{"kind":"trees","features":["a"],"objective":"reg:squarederror","base_score":2,"trees":[`+leaf("1.5")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	if y, _ := r.Eval([]float64{0}, r.Scratch()); y != 3.5 || r.Classifier() {
		t.Errorf("regression: %v (classifier %v), want 3.5", y, r.Classifier())
	}
}

func TestLinearAndLogistic(t *testing.T) {
	m, err := ParseModel("lin", []byte(`{"kind":"linear","features":["a","b","c"],"weights":[1,2,3],"intercept":-1}`))
	if err != nil {
		t.Fatal(err)
	}
	if y, _ := m.Eval([]float64{1, 1, 1}, nil); y != 5 {
		t.Errorf("linear = %v, want 5", y)
	}
	g, err := ParseModel("log", []byte(`{"kind":"logistic","features":["a"],"weights":[2],"intercept":0,"threshold":0.9}`))
	if err != nil {
		t.Fatal(err)
	}
	if p, c := g.Eval([]float64{1}, nil); math.Abs(p-1/(1+math.Exp(-2))) > 1e-12 || c != 0 {
		t.Errorf("logistic = %v class %d, want σ(2) = 0.88 below the threshold 0.9", p, c)
	}
}

func TestModelErrors(t *testing.T) {
	tree := func(body string) string {
		return `{"kind":"trees","features":["a","b"],"trees":[` + body + `]}`
	}
	cases := map[string]string{
		`{"kind":"linear","features":["a"],"weights":[1,2]}`:                                                                          `model "m": weights: has 2 weights for 1 features`,
		`{"kind":"linear","weights":[]}`:                                                                                              `model "m": features: is required`,
		`{"kind":"linear","features":["a","a"],"weights":[1,2]}`:                                                                      `model "m": features[1]: names must be unique`,
		`{"kind":"svm","features":["a"]}`:                                                                                             `model "m": kind: unknown kind "svm"`,
		`{"features":["a"]}`:                                                                                                          `model "m": kind: is required`,
		`{"kind":"linear","features":["a"],"weights":[1],"bias":1}`:                                                                   `model "m": not a model: json: unknown field "bias"`,
		`{"kind":"linear","features":["a"],"weights":[1],"classes":["x","y"]}`:                                                        `model "m": classes: a linear model predicts a number`,
		`{"kind":"logistic","features":["a"],"weights":[1],"classes":["x"]}`:                                                          `model "m": classes: a logistic model has 2 classes, got 1`,
		`{"kind":"logistic","features":["a"],"weights":[1],"threshold":1}`:                                                            `model "m": threshold: must be between 0 and 1`,
		`{"kind":"trees","features":["a"]}`:                                                                                           `model "m": trees: is required`,
		`{"kind":"trees","features":["a"],"objective":"rank:pairwise","trees":[]}`:                                                    `model "m": objective: unknown objective "rank:pairwise"`,
		`{"kind":"trees","features":["a"],"objective":"multi:softmax","num_class":1,"trees":[]}`:                                      `model "m": num_class: must be from 2`,
		`{"kind":"trees","features":["a"],"objective":"binary:logistic","base_score":1,"trees":[]}`:                                   `model "m": base_score: must be a probability`,
		`{"kind":"trees","features":["a"],"objective":"multi:softprob","num_class":2,"trees":[{"nodeid":0,"leaf":1}]}`:                `model "m": trees: 1 trees do not divide among 2 classes`,
		tree(`{"nodeid":0,"split":"c","split_condition":1,"yes":1,"no":2,"children":[{"nodeid":1,"leaf":1},{"nodeid":2,"leaf":2}]}`):  `model "m": trees[0]: node 0: split: "c" is not one of the 2 features`,
		tree(`{"nodeid":0,"split":"f1","split_condition":1,"yes":1,"no":3,"children":[{"nodeid":1,"leaf":1},{"nodeid":2,"leaf":2}]}`): `model "m": trees[0]: node 0: no is 3, which is not one of its children`,
		tree(`{"nodeid":0,"split":"a","yes":1,"no":2,"children":[{"nodeid":1,"leaf":1},{"nodeid":2,"leaf":2}]}`):                      `model "m": trees[0]: node 0: split_condition is required`,
		tree(`{"nodeid":0,"split":"a","split_condition":1,"yes":1,"no":1,"children":[{"nodeid":1,"leaf":1},{"nodeid":1,"leaf":2}]}`):  `model "m": trees[0]: nodeid 1 appears twice`,
		tree(`{"leaf":1}`):     `model "m": trees[0]: a node has no nodeid`,
		tree(`[1]`):            `model "m": trees[0]: not a tree`,
		`{"kind":"linear"} {}`: `model "m": not a model: data after the JSON object`,
		`not json`:             `model "m": not a model`,
	}
	for spec, want := range cases {
		_, err := ParseModel("m", []byte(spec))
		var me *ModelError
		if err == nil || !errors.As(err, &me) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", spec, err, want)
		}
	}
}

// FuzzParseModel: any bytes give a model that evaluates or an error, never
// a panic or a loop.
func FuzzParseModel(f *testing.F) {
	f.Add([]byte(xgbBinary))
	f.Add([]byte(`{"kind":"linear","features":["a"],"weights":[1],"intercept":2}`))
	f.Add([]byte(`{"kind":"trees","features":["a"],"objective":"multi:softmax","num_class":2,"trees":[{"nodeid":0,"leaf":1},{"nodeid":0,"leaf":2}]}`))
	f.Add([]byte(`{"kind":"trees","features":["a","b"],"trees":[{"nodeid":0,"split":0,"split_condition":1,"yes":1,"no":1,"children":[{"nodeid":1,"leaf":1}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseModel("fuzz", b)
		if err != nil {
			return
		}
		x := make([]float64, len(m.Features()))
		for i := range x {
			x[i] = float64(i) - 0.5
		}
		m.Eval(x, m.Scratch())
		x[0] = math.NaN()
		m.Eval(x, m.Scratch())
	})
}

func TestDetectorsRestoreExactly(t *testing.T) {
	mk := []func() Online{
		func() Online { return NewAnomaly() },
		func() Online { z, _ := NewZScore(50); return z },
		func() Online { e, _ := NewEWMA(0.2); return e },
		func() Online { f, _ := NewForecast(3, 24); return f },
		func() Online { c, _ := NewChangePoint(5); return c },
	}
	for _, m := range mk {
		a, b := m(), m()
		var want, got []float64
		for i := range 1000 {
			x := math.Sin(float64(i)/7)*10 + float64(i%13)
			if i > 700 {
				x += 30
			}
			want = append(want, a.Update(x))
			if i == 500 {
				st := b.AppendState(nil)
				b = m()
				rest, err := b.DecodeState(st)
				if err != nil || len(rest) != 0 {
					t.Fatalf("%T: decode: %v, %d bytes left", b, err, len(rest))
				}
				if _, err := m().DecodeState(st[:len(st)-1]); !errors.Is(err, ErrBadState) {
					t.Errorf("%T: short state decoded: %v", b, err)
				}
			}
			got = append(got, b.Update(x))
		}
		for i := range want {
			if want[i] != got[i] && !(math.IsNaN(want[i]) && math.IsNaN(got[i])) {
				t.Errorf("%T: point %d: %v after restore, %v without", a, i, got[i], want[i])
				break
			}
		}
	}
}

func TestParseModelsNamesConfigPaths(t *testing.T) {
	ms, err := ParseModels(map[string][]byte{
		"good": []byte(`{"kind":"linear","features":["a"],"weights":[1]}`),
		"b1":   []byte(`{"kind":"linear","features":["a"],"weights":[]}`),
		"b2":   []byte(`{"kind":"x","features":["a"]}`),
	})
	want := "model \"b1\": models.b1.weights: has 0 weights for 1 features\nmodel \"b2\": models.b2.kind: unknown kind \"x\": linear, logistic or trees"
	if err == nil || err.Error() != want || ms != nil {
		t.Errorf("got %v\nwant %s", err, want)
	}
	ms, err = ParseModels(map[string][]byte{"good": []byte(`{"kind":"linear","features":["a"],"weights":[1]}`)})
	if err != nil || ms["good"] == nil {
		t.Errorf("good model: %v", err)
	}
}

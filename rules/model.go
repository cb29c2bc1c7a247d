package rules

import (
	"math"

	"github.com/sluiceio/sluice/rules/ml"
)

// model compiles predict("model", f1, f2, ...) and classify("model", ...):
// the model is found by name when the rule compiles (Options.Models), and its
// inputs are checked against the model's features there, so a rule never
// meets a missing or misshapen model while it runs.
//
// predict returns the model's number (a regression's value, a classifier's
// probability of its chosen class, of class 1 when binary); classify the
// chosen class, as its label when the model names its classes, else as its
// index. An input that is not a number is missing: linear and logistic
// models then return null, trees take their missing branches.
func (c *compiler) model(n *node) (evalFn, error) {
	if len(n.args) < 2 || n.args[0].op != "str" {
		return nil, c.errorf(n, "%s() takes a model name (a string constant) and the model's inputs", n.str)
	}
	name := n.args[0].str
	m := c.models[name]
	if m == nil {
		err := c.errorf(n.args[0], "%s(): no model %q in the config", n.str, name)
		err.(*PosError).Err = &NoModelError{Name: name}
		return nil, err
	}
	if got, want := len(n.args)-1, len(m.Features()); got != want {
		return nil, c.errorf(n, "%s(): model %q takes %d inputs %v, got %d", n.str, name, want, m.Features(), got)
	}
	classify := n.str == "classify"
	if classify && !m.Classifier() {
		return nil, c.errorf(n, "classify(): model %q is a regression; use predict()", name)
	}
	args, err := c.compileAll(n.args[1:])
	if err != nil {
		return nil, err
	}
	// A plan runs on one goroutine, so one buffer per call site is enough.
	x, scratch := make([]float64, len(args)), m.Scratch()
	return func(r *Record, g *aggView) Value {
		for i, a := range args {
			v := a(r, g)
			if v.Kind == KindNumber || v.Kind == KindBool {
				x[i] = v.Num
			} else {
				x[i] = math.NaN()
			}
		}
		pred, class := m.Eval(x, scratch)
		if !classify {
			if math.IsNaN(pred) {
				return Null
			}
			return Number(pred)
		}
		if math.IsNaN(pred) {
			return Null
		}
		if l, ok := m.Label(class); ok {
			return String(l)
		}
		return Number(float64(class))
	}, nil
}

// compile-time check that ml's Online values fit the registry.
var _ ml.Online = (*ml.Anomaly)(nil)

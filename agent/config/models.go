package config

import (
	"encoding/json"
	"errors"

	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/rules/ml"
)

// validateModels loads the models section (name → the JSON form of
// rules/ml, MODELS.md, written in YAML or JSON) and gives every rule the
// loaded models, so that rules calling predict or classify compile. Each bad
// model is an error at its path (models.<name>.<field>).
func (c *Config) validateModels(add func(path, format string, args ...any)) {
	specs := make(map[string][]byte, len(c.Models))
	for name, m := range c.Models {
		b, err := json.Marshal(m)
		if err != nil {
			add("models."+name, "%v", err)
			continue
		}
		specs[name] = b
	}
	models, err := ml.ParseModels(specs)
	if err != nil {
		var joined interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &joined) {
			errs = joined.Unwrap()
		}
		c.badModels = map[string]bool{}
		for _, e := range errs {
			var me *ml.ModelError
			if errors.As(e, &me) {
				add(me.Field, "%v", me.Err)
				c.badModels[me.Model] = true
			} else {
				add("models", "%v", e)
			}
		}
		return
	}
	for i := range c.Rules {
		c.Rules[i].models = models
	}
}

// Compile compiles the rule with the config's models (see Spec).
func (r *Rule) Compile() (*rules.Plan, error) {
	return rules.CompileWith(r.Spec(), r.options())
}

// UsesModels reports whether the rule calls predict or classify: it needs
// its models to compile.
func (r *Rule) UsesModels() bool {
	if len(r.models) == 0 {
		return false
	}
	bare := *r
	bare.models = nil
	_, err := bare.Compile()
	return err != nil
}

func (r *Rule) options() rules.Options { return rules.Options{Models: r.models} }

// callsBadModel reports whether err is a rule's complaint about a model
// that the models section has but could not load (reported there already).
func (c *Config) callsBadModel(err error) bool {
	var nm *rules.NoModelError
	return errors.As(err, &nm) && c.badModels[nm.Name]
}

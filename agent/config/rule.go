package config

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/rules"
)

// Rule is one rule in its structured form.
type Rule struct {
	Name      string   `yaml:"name"`
	From      string   `yaml:"from"` // input name
	Where     string   `yaml:"where"`
	GroupBy   []string `yaml:"group_by"`
	Window    *Window  `yaml:"window"`
	Select    Select   `yaml:"select"`
	Having    string   `yaml:"having"`
	MaxGroups int      `yaml:"max_groups"`
	To        []string `yaml:"to"` // uplink names; empty: every uplink
}

// Window is a rule's window.
type Window struct {
	Tumbling time.Duration `yaml:"tumbling"`
}

// Select is an ordered mapping of output names to expressions.
type Select []SelectItem

// SelectItem is one entry of a select mapping.
type SelectItem struct {
	Name string
	Expr string
	line int
}

// UnmarshalYAML keeps the order of the mapping, which is the order of the
// values in every output.
func (s *Select) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: select must be a mapping of name: expression", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: select.%s must be an expression", v.Line, k.Value)
		}
		*s = append(*s, SelectItem{Name: k.Value, Expr: v.Value, line: v.Line})
	}
	return nil
}

// validateRules checks the rules section.
func (c *Config) validateRules(add func(path, format string, args ...any), checkName func(path, name string, seen map[string]bool), inputs, uplinks map[string]bool) {
	ruleNames := map[string]bool{}
	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		checkName(p+".name", r.Name, ruleNames)
		if r.From == "" {
			add(p+".from", "%v", errRequired)
		} else if !inputs[r.From] {
			add(p+".from", "no input is named %q", r.From)
		}
		for j, to := range r.To {
			if !uplinks[to] {
				add(fmt.Sprintf("%s.to[%d]", p, j), "no uplink is named %q", to)
			}
		}
		if _, err := rules.Compile(r.Spec()); err != nil {
			var se *rules.SpecError
			if errors.As(err, &se) {
				field := se.Field
				if field == "window.tumbling" && r.Window == nil {
					field = "window"
				}
				add(p+"."+field, "%v", se.Err)
			} else {
				add(p, "%v", err)
			}
		}
	}
	if len(c.Rules) == 0 {
		add("rules", "needs at least one rule")
	}
}

// Spec translates the rule into the rules package's form.
func (r *Rule) Spec() rules.Spec {
	s := rules.Spec{Name: r.Name, Where: r.Where, GroupBy: r.GroupBy, Having: r.Having, MaxGroups: r.MaxGroups}
	if r.Window != nil {
		s.Tumbling = r.Window.Tumbling
		if s.Tumbling == 0 {
			s.Tumbling = -1 // a window without a size is an error, not a stateless rule
		}
	}
	for _, it := range r.Select {
		s.Select = append(s.Select, rules.SelectItem{Name: it.Name, Expr: it.Expr})
	}
	return s
}

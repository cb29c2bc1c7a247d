package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/rules"
	"github.com/sluiceio/sluice/rules/ml"
)

// Rule is one rule in its structured form, or a query in sql (then where,
// group_by, window, event_time, select and having come from the query).
type Rule struct {
	Name      string        `yaml:"name"`
	From      string        `yaml:"from"` // input name; a query's FROM fills it
	SQL       string        `yaml:"sql"`
	Where     string        `yaml:"where"`
	GroupBy   []string      `yaml:"group_by"`
	Window    *Window       `yaml:"window"`
	EventTime *EventTime    `yaml:"event_time"`
	Select    Select        `yaml:"select"`
	Having    string        `yaml:"having"`
	Drop      []string      `yaml:"drop"` // fields left out of a passed-through record
	Alert     *Alert        `yaml:"alert"`
	Pattern   []PatternStep `yaml:"pattern"`
	Deadband  *Deadband     `yaml:"deadband"`
	Dedup     bool          `yaml:"dedup"`
	Priority  string        `yaml:"priority"` // high or normal; default high for alerts and patterns
	MaxGroups int           `yaml:"max_groups"`
	To        []string      `yaml:"to"` // uplink names; empty: every uplink

	models map[string]*ml.Model // the config's, set by validation
}

// Window is a rule's window: exactly one of its kinds.
type Window struct {
	Tumbling time.Duration  `yaml:"tumbling"`
	Hopping  *HoppingWindow `yaml:"hopping"`
	Sliding  time.Duration  `yaml:"sliding"`
	Session  *SessionWindow `yaml:"session"`
	Count    *CountWindow   `yaml:"count"`
}

// HoppingWindow is a window of size starting every every.
type HoppingWindow struct {
	Size  time.Duration `yaml:"size"`
	Every time.Duration `yaml:"every"`
}

// SessionWindow closes after gap without records: `session: 2m` or
// `session: {gap: 2m}`.
type SessionWindow struct {
	Gap time.Duration `yaml:"gap"`
}

// UnmarshalYAML accepts the short form `session: 2m`.
func (s *SessionWindow) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&s.Gap)
	}
	type plain SessionWindow
	return n.Decode((*plain)(s))
}

// CountWindow closes at every n records of a group: `count: 100` or
// `count: {n: 100}`.
type CountWindow struct {
	N int `yaml:"n"`
}

// UnmarshalYAML accepts the short form `count: 100`.
func (c *CountWindow) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&c.N)
	}
	type plain CountWindow
	return n.Decode((*plain)(c))
}

// EventTime takes a record's time from a field (unix s or ms, or RFC 3339).
type EventTime struct {
	Field    string        `yaml:"field"`
	Lateness time.Duration `yaml:"lateness"`
	Idle     time.Duration `yaml:"idle"`
	// Late is what becomes of a record older than the watermark: drop
	// (default; counted) or emit (counted and sent upstream as an output
	// of its own with event "late" and the window it missed).
	Late string `yaml:"late"`
}

// Alert raises and clears per group key.
type Alert struct {
	When      string        `yaml:"when"`
	For       time.Duration `yaml:"for"`
	ClearWhen string        `yaml:"clear_when"`
}

// PatternStep is one step of a pattern.
type PatternStep struct {
	When   string        `yaml:"when"`
	Within time.Duration `yaml:"within"`
	Absent bool          `yaml:"absent"`
}

// Deadband reports by exception.
type Deadband struct {
	Fields    []string      `yaml:"fields"`
	Abs       float64       `yaml:"abs"`
	Rel       float64       `yaml:"rel"`
	Heartbeat time.Duration `yaml:"heartbeat"`
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

// validateRules checks the rules section. It also fills the From of a rule
// written in SQL from its query's FROM (the agent routes by From); a custom
// UnmarshalYAML on Rule would do it earlier but lose strict decoding.
func (c *Config) validateRules(add func(path, format string, args ...any), checkName func(path, name string, seen map[string]bool), inputs, uplinks map[string]bool) {
	ruleNames := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		p := fmt.Sprintf("rules[%d]", i)
		checkName(p+".name", r.Name, ruleNames)
		sqlOK := true
		if r.SQL != "" {
			if r.Where != "" || len(r.GroupBy) > 0 || r.Window != nil || r.EventTime != nil || len(r.Select) > 0 || r.Having != "" {
				add(p+".sql", "a rule is a query or has where, group_by, window, event_time, select and having; not both")
			}
			s, err := rules.ParseSQLWith(r.Name, r.SQL, r.options())
			if err != nil && c.callsBadModel(err) {
				sqlOK = false
			} else if err != nil {
				sqlOK = false
				var se *rules.SpecError
				if errors.As(err, &se) {
					err = se.Err
				}
				add(p+".sql", "%v", err)
			} else if r.From == "" {
				r.From = s.From
			} else if s.From != r.From {
				add(p+".from", "%q differs from the query's FROM %s", r.From, s.From)
			}
		}
		switch {
		case r.From == "" && sqlOK:
			add(p+".from", "%v", errRequired)
		case r.From != "" && !inputs[r.From]:
			add(p+".from", "no input is named %q", r.From)
		}
		for j, to := range r.To {
			if !uplinks[to] {
				add(fmt.Sprintf("%s.to[%d]", p, j), "no uplink is named %q", to)
			}
		}
		switch r.Priority {
		case "", "high", "normal":
		default:
			add(p+".priority", "%q: use high or normal", r.Priority)
		}
		if w := r.Window; w != nil && w.kinds() > 1 {
			add(p+".window", "set one of tumbling, hopping, sliding, session, count")
			continue
		}
		if !sqlOK {
			continue
		}
		if _, err := r.Compile(); err != nil && !c.callsBadModel(err) {
			var se *rules.SpecError
			if errors.As(err, &se) {
				add(p+"."+r.fieldPath(se.Field), "%v", se.Err)
			} else {
				add(p, "%v", err)
			}
		}
	}
	if len(c.Rules) == 0 {
		add("rules", "needs at least one rule")
	}
}

// fieldPath maps a field of rules.Spec to its path in the YAML rule.
func (r *Rule) fieldPath(field string) string {
	w := r.Window
	switch {
	case r.SQL != "" && !strings.HasPrefix(field, "alert") && !strings.HasPrefix(field, "pattern") && !strings.HasPrefix(field, "deadband") && field != "dedup":
		return "sql"
	case !strings.HasPrefix(field, "window"):
		return field
	case w == nil || w.kinds() == 0:
		return "window"
	case w.Hopping != nil && (field == "window.size" || field == "window.every"):
		return "window.hopping." + strings.TrimPrefix(field, "window.")
	case w.Sliding != 0:
		return "window.sliding"
	case w.Session != nil:
		return "window.session"
	}
	return field
}

func (w *Window) kinds() int {
	n := 0
	for _, set := range []bool{w.Tumbling != 0, w.Hopping != nil, w.Sliding != 0, w.Session != nil, w.Count != nil} {
		if set {
			n++
		}
	}
	return n
}

// HighPriority reports whether the rule's outputs go before summaries (and
// are dropped after them): alerts and patterns unless set otherwise.
func (r *Rule) HighPriority() bool {
	if r.Priority != "" {
		return r.Priority == "high"
	}
	return r.Alert != nil || len(r.Pattern) > 0
}

// Spec translates the rule into the rules package's form. A rule written in
// SQL must have been validated (Validate): a query that does not parse gives
// a spec that does not compile.
func (r *Rule) Spec() rules.Spec {
	s := rules.Spec{Name: r.Name, From: r.From, Where: r.Where, GroupBy: r.GroupBy, Having: r.Having,
		MaxGroups: r.MaxGroups, Drop: r.Drop, Dedup: r.Dedup}
	if r.SQL != "" {
		q, err := rules.ParseSQLWith(r.Name, r.SQL, r.options())
		if err != nil {
			q = rules.Spec{Name: r.Name, Where: "("} // fails to compile, as the query did
		}
		q.MaxGroups, q.Drop, q.Dedup = r.MaxGroups, r.Drop, r.Dedup
		s = q
	}
	if w := r.Window; w != nil {
		switch {
		case w.Tumbling != 0:
			s.Window = rules.Window{Kind: rules.Tumbling, Size: w.Tumbling}
		case w.Hopping != nil:
			s.Window = rules.Window{Kind: rules.Hopping, Size: w.Hopping.Size, Every: w.Hopping.Every}
		case w.Sliding != 0:
			s.Window = rules.Window{Kind: rules.Sliding, Size: w.Sliding}
		case w.Session != nil:
			s.Window = rules.Window{Kind: rules.Session, Gap: w.Session.Gap}
		case w.Count != nil:
			s.Window = rules.Window{Kind: rules.Count, Count: w.Count.N}
		default:
			s.Tumbling = -1 // a window without a size is an error, not a stateless rule
		}
	}
	if e := r.EventTime; e != nil {
		s.EventTime = rules.EventTime{Field: e.Field, Lateness: e.Lateness, Idle: e.Idle, Late: e.Late}
	}
	for _, it := range r.Select {
		s.Select = append(s.Select, rules.SelectItem{Name: it.Name, Expr: it.Expr})
	}
	if a := r.Alert; a != nil {
		s.Alert = &rules.Alert{When: a.When, For: a.For, ClearWhen: a.ClearWhen}
	}
	for _, st := range r.Pattern {
		s.Pattern = append(s.Pattern, rules.PatternStep{When: st.When, Within: st.Within, Absent: st.Absent})
	}
	if d := r.Deadband; d != nil {
		s.Deadband = &rules.Deadband{Fields: d.Fields, Abs: d.Abs, Rel: d.Rel, Heartbeat: d.Heartbeat}
	}
	return s
}

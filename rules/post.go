package rules

import (
	"math"
	"slices"
)

// compilePost compiles what follows the core of a rule: alert or pattern,
// then deadband or dedup.
func (p *Plan) compilePost(s Spec) error {
	if s.Alert != nil && len(s.Pattern) > 0 {
		return specErr("pattern", "a rule has an alert or a pattern, not both")
	}
	if a := s.Alert; a != nil {
		op := &alertOp{forNs: int64(a.For), states: map[string]*alertState{}}
		var err error
		if op.when, err = p.condExpr("alert.when", a.When); err != nil {
			return err
		}
		if a.ClearWhen != "" {
			if op.clear, err = p.condExpr("alert.clear_when", a.ClearWhen); err != nil {
				return err
			}
		}
		if a.For < 0 {
			return specErr("alert.for", "must not be negative")
		}
		p.alert = op
	}
	if len(s.Pattern) > 0 {
		op := &patternOp{states: map[string]*patState{}, next: math.MaxInt64}
		for i, st := range s.Pattern {
			field := "pattern[" + itoa(i) + "]"
			cond, err := p.condExpr(field+".when", st.When)
			if err != nil {
				return err
			}
			switch {
			case st.Within < 0:
				return specErr(field+".within", "must not be negative")
			case st.Absent && i == 0:
				return specErr(field+".absent", "the first step cannot be absent")
			case st.Absent && st.Within == 0:
				return specErr(field+".within", "an absent step needs within")
			}
			op.steps = append(op.steps, patternStep{cond: cond, within: int64(st.Within), absent: st.Absent})
		}
		p.pattern = op
	}
	if s.Deadband != nil && s.Dedup {
		return specErr("dedup", "a rule has a deadband or dedup, not both")
	}
	if d := s.Deadband; d != nil {
		if d.Abs < 0 || d.Rel < 0 || d.Heartbeat < 0 || math.IsNaN(d.Abs) || math.IsNaN(d.Rel) {
			return specErr("deadband", "abs, rel and heartbeat must not be negative")
		}
		names := p.names()
		if len(names) > 0 && !slices.Contains(names, "*") {
			for _, f := range d.Fields {
				if !slices.Contains(names, f) {
					return specErr("deadband.fields", "%q is not a select name", f)
				}
			}
		}
		p.band = &deadbandOp{fields: d.Fields, abs: d.Abs, rel: d.Rel, beat: int64(d.Heartbeat), states: map[string]*bandState{}}
	}
	if s.Dedup {
		p.band = &deadbandOp{states: map[string]*bandState{}}
	}
	return nil
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + itoa(i%10)
}

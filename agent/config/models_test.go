package config

import (
	"strings"
	"testing"

	"github.com/sluiceio/sluice/rules"
)

const withModel = `gateway: gw-01
inputs:
  - name: telemetry
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [sensors/+/telemetry]}
models:
  heat:
    kind: linear
    features: [temp, load]
    weights: [2, -1]
    intercept: 0.5
rules:
  - name: predicted
    from: telemetry
    select:
      y: predict('heat', temperature, load)
  - name: sql
    sql: SELECT predict('heat', temperature, load) AS y FROM telemetry
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
`

func TestModelsSection(t *testing.T) {
	c, err := Parse([]byte(withModel))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		p, err := r.Compile()
		if err != nil {
			t.Fatalf("rule %s: %v", r.Name, err)
		}
		if !r.UsesModels() {
			t.Errorf("rule %s: UsesModels is false", r.Name)
		}
		rec := rules.Record{}
		rec.Set("temperature", rules.Number(20))
		rec.Set("load", rules.Number(3))
		outs := p.Process(&rec, nil)
		if len(outs) != 1 {
			t.Fatalf("rule %s: %d outputs", r.Name, len(outs))
		}
		if got := outs[0].Values[0].Value; got.Kind != rules.KindNumber || got.Num != 2*20-3+0.5 {
			t.Errorf("rule %s: y = %+v, want 37.5", r.Name, got)
		}
	}
}

func TestModelsErrorsNamePath(t *testing.T) {
	for _, c := range []struct{ old, edit, want string }{
		{"weights: [2, -1]", "weights: [2]", "models.heat.weights"},
		{"kind: linear", "kind: forest", "models.heat.kind"},
		{`predict('heat'`, `predict('cool'`, `predict(): no model "cool" in the config`},
	} {
		doc := strings.Replace(withModel, c.old, c.edit, 1)
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant it to contain %q", c.edit, err, c.want)
		}
		// A model that fails to load is reported once, at its path: the
		// rules calling it do not add "no model" errors of their own.
		if strings.HasPrefix(c.want, "models.") && strings.Contains(err.Error(), "no model") {
			t.Errorf("%s: error %v\nalso blames the rules", c.edit, err)
		}
	}
}

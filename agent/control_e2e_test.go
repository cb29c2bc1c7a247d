package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemoteConfigPushWhileRunning runs the agent binary with the control
// plane on, then, between two halves of the load, pushes a signed config over
// MQTT with `sluice ctl` that keeps one rule, changes one, removes one and
// adds one. The kept rule counts every message exactly once with the right
// averages, as a run without the push would; config/reported says applied.
func TestRemoteConfigPushWhileRunning(t *testing.T) {
	r := newRig(t)
	ctl := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := ctlMain(args, &out, &errb)
		return code, out.String() + errb.String()
	}
	key := filepath.Join(r.dir, "fleet")
	if code, out := ctl("keygen", "-out", key); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	rule := func(name, where string) string {
		return fmt.Sprintf("  - name: %s\n    from: telemetry\n    where: %s\n    group_by: [device]\n    window: {tumbling: 1s}\n    select: {n: count(*)}\n", name, where)
	}
	base, _ := os.ReadFile(r.config)
	withRules := func(doc string, extra ...string) string {
		return strings.Replace(doc, "uplinks:", strings.Join(extra, "")+"uplinks:", 1)
	}
	local := withRules(string(base), rule("changed", "temperature > 0"), rule("removed", "temperature > 0")) +
		fmt.Sprintf("control:\n  enabled: true\n  url: %s\n  require_signed: true\n  trusted_keys: [%s]\n", r.broker.URL, strings.TrimSpace(string(pub)))
	os.WriteFile(r.config, []byte(local), 0o600)
	r.startAgent()

	f1 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	// The pushed config: no gateway, data_dir or control (those stay local).
	remote := withRules(string(base), rule("changed", "temperature > 10"), rule("added", "temperature > 0"))
	var kept []string
	for _, l := range strings.Split(remote, "\n") {
		if !strings.HasPrefix(l, "gateway:") && !strings.HasPrefix(l, "data_dir:") {
			kept = append(kept, l)
		}
	}
	newCfg := filepath.Join(r.dir, "v2.yaml")
	os.WriteFile(newCfg, []byte(strings.Join(kept, "\n")), 0o600)
	doc := filepath.Join(r.dir, "v2.json")
	if code, out := ctl("sign", "-key", key+".key", "-version", "2", "-gateway", "gw-test", "-o", doc, newCfg); code != 0 {
		t.Fatalf("sign: %s", out)
	}
	if code, out := ctl("push", "-broker", r.broker.URL, "-timeout", "30s", doc); code != 0 || !strings.Contains(out, "applied version 2") {
		t.Fatalf("push %d: %s", code, out)
	}
	f2 := publish(t, r.broker.URL, 10, 1000, 0, nil)
	if err := r.agent.lines.Wait("config applied in place", 10*time.Second); err != nil {
		t.Errorf("the agent did not swap in place: %v", err)
	}
	for dev, n := range f2.count {
		f1.count[dev] += n
		f1.sum[dev] += f2.sum[dev]
		f1.max[dev] = max(f1.max[dev], f2.max[dev])
	}

	// temp_1s counts all 2000; "removed" (before the swap) and "added"
	// (after it) together count each message above 0 exactly once.
	above0 := 0
	for i := 0; i < 1000; i++ {
		if temperature(i) > 0 {
			above0 += 2 // both halves publish the same values
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		envs, _, _ := r.collector.Snapshot()
		per := map[string]float64{}
		for _, e := range envs {
			per[e.Rule] += e.Values["n"]
		}
		if per["temp_1s"] == 2000 && per["removed"]+per["added"] == float64(above0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts per rule %v: want temp_1s 2000 and removed + added %d", per, above0)
		}
		if _, err := r.collector.WaitSum("n", r.collector.SumValue("n")+1, time.Second); err != nil {
			continue // no new output within a second: look again until the deadline
		}
	}
	// The kept rule's outputs: per device counts, averages and maxima exact.
	envs, _, _ := r.collector.Snapshot()
	n, sum, mx := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, e := range envs {
		if e.Rule != "temp_1s" {
			continue
		}
		dev, _ := e.Key["device"].(string)
		n[dev] += e.Values["n"]
		sum[dev] += e.Values["avg_t"] * e.Values["n"]
		mx[dev] = max(mx[dev], e.Values["max_t"])
	}
	for dev, c := range f1.count {
		if n[dev] != float64(c) || fmt.Sprintf("%.6f", sum[dev]/n[dev]) != fmt.Sprintf("%.6f", f1.sum[dev]/float64(c)) || mx[dev] != f1.max[dev] {
			t.Errorf("%s: n %v avg %v max %v, want %d %v %v", dev, n[dev], sum[dev]/n[dev], mx[dev], c, f1.sum[dev]/float64(c), f1.max[dev])
		}
	}
}

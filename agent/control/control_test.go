package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/agent/config"
)

func TestCanonicalAndSignatures(t *testing.T) {
	a := []byte(`{"b": 1.10, "a": {"z": 12345678901234567890, "y": [3, "x<y&z"]}, "sig": "zzz"}`)
	c, err := Canonical(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"y":[3,"x<y&z"],"z":12345678901234567890},"b":1.10}`; string(c) != want {
		t.Fatalf("canonical\n got %s\nwant %s", c, want)
	}
	k, other := newKey(t), newKey(t)
	signed, err := Sign(a, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(signed, []ed25519.PublicKey{k.pub}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Whitespace and key order do not matter; content does.
	var m map[string]any
	json.Unmarshal(signed, &m)
	pretty, _ := json.MarshalIndent(m, "", "  ")
	if err := Verify(pretty, []ed25519.PublicKey{other.pub, k.pub}); err == nil {
		// json.Unmarshal into float64 turns 12345678901234567890 into 1.2345678901234567e+19:
		// the content changed, so the signature must not verify.
		t.Fatal("a document whose numbers changed still verifies")
	}
	tampered := strings.Replace(string(signed), `"b":1.10`, `"b":1.1`, 1)
	if err := Verify([]byte(tampered), []ed25519.PublicKey{k.pub}); err == nil {
		t.Fatal("tampered document verifies")
	}
	reordered := strings.Replace(string(signed), `{"a":`, `{ "b" : 1.10 , "a":`, 1)
	reordered = strings.Replace(reordered, `,"b":1.10`, ``, 1)
	if err := Verify([]byte(reordered), []ed25519.PublicKey{k.pub}); err != nil {
		t.Fatalf("reordered document: %v\n%s", err, reordered)
	}
	if err := Verify(signed, []ed25519.PublicKey{other.pub}); err == nil {
		t.Fatal("verifies with a key that did not sign")
	}
	if err := Verify(a[:0:0], nil); err == nil {
		t.Fatal("empty document verifies")
	}
}

// TestApply: a signed document that adds, changes and removes rules is
// applied, persisted and reported; the status says ready.
func TestApply(t *testing.T) {
	b := startBroker(t)
	k := newKey(t)
	rt, store := newTestRuntime(t), &MemStore{}
	op := newOperator(t, b.URL, "sluice/gw-01/#")
	c := newController(t, rt, store, controlConfig(b.URL, []string{k.b64()}, true))
	startController(t, c)

	var st Status
	op.waitFor("sluice/gw-01/status", func(p []byte) bool { return json.Unmarshal(p, &st) == nil && st.State == "ready" })
	if st.BootSeq != 1 || st.Version != "test" {
		t.Fatalf("status %+v", st)
	}
	doc := desiredDoc(t, 7, "gw-01", remoteConfig, k.priv)
	op.publish("sluice/gw-01/config/desired", true, doc)
	r := op.report(7)
	if r.Status != StatusApplied || r.AppliedVersion != 7 || r.ConfigHash == "" || len(r.Errors) > 0 {
		t.Fatalf("report %+v", r)
	}
	if got := rt.ruleNames(); !slices.Equal(got, []string{"keep", "change", "added"}) {
		t.Fatalf("running rules %v", got)
	}
	d, cfg, err := LastApplied(store)
	if err != nil || d == nil || d.Version != 7 || ConfigHash(cfg) != r.ConfigHash {
		t.Fatalf("persisted %+v %v", d, err)
	}
	if c.AppliedVersion() != 7 {
		t.Fatalf("applied version %d", c.AppliedVersion())
	}
	// Health arrives every interval with the runtime's status.
	var h Health
	op.waitFor("sluice/gw-01/health", func(p []byte) bool { return json.Unmarshal(p, &h) == nil })
	if h.ConfigVersion != 7 || h.Gateway != "gw-01" {
		t.Fatalf("health %+v", h)
	}
}

// TestRejections: each bad document is reported with its reason and the
// running config is untouched.
func TestRejections(t *testing.T) {
	b := startBroker(t)
	k, stranger := newKey(t), newKey(t)
	rt, store := newTestRuntime(t), &MemStore{}
	op := newOperator(t, b.URL, "sluice/gw-01/config/reported")
	c := newController(t, rt, store, controlConfig(b.URL, []string{k.b64()}, true))
	startController(t, c)

	op.publish("sluice/gw-01/config/desired", true, desiredDoc(t, 5, "gw-01", remoteConfig, k.priv))
	if r := op.report(5); r.Status != StatusApplied {
		t.Fatalf("setup: %+v", r)
	}
	invalid := strings.Replace(remoteConfig, `"from":"telemetry","where"`, `"from":"nowhere","where"`, 1)
	cases := []struct {
		name    string
		doc     []byte
		path    string
		msgPart string
	}{
		{"invalid config", desiredDoc(t, 6, "gw-01", invalid, k.priv), "config.rules[2].from", "nowhere"},
		{"stale version", desiredDoc(t, 4, "gw-01", remoteConfig, k.priv), "version", "not above the applied version 5"},
		{"same version, other content", desiredDoc(t, 5, "gw-01", invalid, k.priv), "version", "replayed"},
		{"wrong target", desiredDoc(t, 8, "gw-02", remoteConfig, k.priv), "target", `"gw-02"`},
		{"unsigned", desiredDoc(t, 9, "gw-01", remoteConfig, nil), "sig", "unsigned"},
		{"bad signature", desiredDoc(t, 10, "gw-01", remoteConfig, stranger.priv), "sig", "does not verify"},
		{"control over mqtt", desiredDoc(t, 11, "gw-01", `{"control":{"require_signed":false}}`, k.priv), "config.control", "local file only"},
		{"not JSON", []byte(`{"version":12,`), "", "decode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v struct{ Version int64 }
			json.Unmarshal(tc.doc, &v)
			op.publish("sluice/gw-01/config/desired", true, tc.doc)
			r := op.report(v.Version)
			if r.Status != StatusRejected || r.AppliedVersion != 5 || len(r.Errors) == 0 {
				t.Fatalf("report %+v", r)
			}
			if e := r.Errors[0]; e.Path != tc.path || !strings.Contains(e.Msg, tc.msgPart) {
				t.Fatalf("error %+v, want path %q and %q", r.Errors, tc.path, tc.msgPart)
			}
			if applies, _ := rt.count(); applies != 1 || c.AppliedVersion() != 5 {
				t.Fatalf("running config touched: %d applies, version %d", applies, c.AppliedVersion())
			}
			if d, _, _ := LastApplied(store); d.Version != 5 {
				t.Fatalf("persisted version %d", d.Version)
			}
		})
	}
}

// TestOffline: a document pushed while the gateway was away is applied when
// it connects; a restart sees it again and does nothing; a gateway whose
// broker is down boots on the persisted document.
func TestOffline(t *testing.T) {
	b := startBroker(t)
	op := newOperator(t, b.URL, "sluice/gw-01/config/reported")
	op.publish("sluice/gw-01/config/desired", true, desiredDoc(t, 3, "gw-01", remoteConfig, nil))

	store := &MemStore{}
	rt := newTestRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	c := newController(t, rt, store, controlConfig(b.URL, nil, false))
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	if r := op.report(3); r.Status != StatusApplied {
		t.Fatalf("report %+v", r)
	}
	cancel()
	<-done

	// Restart on the same store: the retained document is the running one.
	rt2 := newTestRuntime(t)
	c2 := newController(t, rt2, store, controlConfig(b.URL, nil, false))
	if c2.AppliedVersion() != 3 || c2.BootSeq() != 2 {
		t.Fatalf("restart: version %d boot %d", c2.AppliedVersion(), c2.BootSeq())
	}
	startController(t, c2)
	op2 := newOperator(t, b.URL, "sluice/gw-01/status")
	var st Status
	op2.waitFor("sluice/gw-01/status", func(p []byte) bool { return json.Unmarshal(p, &st) == nil && st.BootSeq == 2 })
	if st.ConfigVersion != 3 {
		t.Fatalf("status %+v", st)
	}
	op.publish("sluice/gw-01/config/desired", true, desiredDoc(t, 4, "gw-01", remoteConfig, nil))
	op.report(4)
	if applies, _ := rt2.count(); applies != 1 {
		t.Fatalf("restart applied %d documents, want only version 4", applies)
	}

	// Broker down at boot: the persisted document is there; Run keeps
	// retrying and returns when told to.
	d, cfg, err := LastApplied(store)
	if err != nil || d.Version != 4 {
		t.Fatalf("last applied %+v %v", d, err)
	}
	if _, err := ParseRemote(cfg, rt.local); err != nil {
		t.Fatalf("persisted config does not parse: %v", err)
	}
	down := newController(t, newTestRuntime(t), store, controlConfig("tcp://127.0.0.1:1", nil, false))
	dctx, dcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer dcancel()
	if err := down.Run(dctx); err != nil {
		t.Fatal(err)
	}
}

// TestGroups: a group's document applies while the gateway has none of its
// own; the gateway's own document then wins.
func TestGroups(t *testing.T) {
	b := startBroker(t)
	rt := newTestRuntime(t)
	op := newOperator(t, b.URL, "sluice/gw-01/config/reported")
	c := newController(t, rt, &MemStore{}, controlConfig(b.URL, nil, false, "plant-a"))
	startController(t, c)
	op.publish("sluice/group/plant-a/config/desired", true, desiredDoc(t, 1, "group/plant-a", remoteConfig, nil))
	if r := op.report(1); r.Status != StatusApplied || r.Source != "group/plant-a" {
		t.Fatalf("group report %+v", r)
	}
	op.publish("sluice/gw-01/config/desired", true, desiredDoc(t, 1, "gw-01", strings.Replace(remoteConfig, `"30s"`, `"10s"`, 1), nil))
	var r Reported
	op.waitFor("sluice/gw-01/config/reported", func(p []byte) bool {
		return json.Unmarshal(p, &r) == nil && r.Source == "own"
	})
	if r.Status != StatusApplied {
		t.Fatalf("own report %+v", r)
	}
	op.publish("sluice/group/plant-a/config/desired", true, desiredDoc(t, 2, "group/plant-a", remoteConfig, nil))
	if r := op.report(2); r.Status != StatusRejected || !strings.Contains(r.Errors[0].Msg, "own config") {
		t.Fatalf("group after own %+v", r)
	}
	if applies, _ := rt.count(); applies != 2 {
		t.Fatalf("%d applies", applies)
	}
}

// TestCommands: allowlisted commands run once per id, even when the request
// is delivered again; unknown, expired and repeated requests run nothing.
func TestCommands(t *testing.T) {
	b := startBroker(t)
	k := newKey(t)
	rt, store := newTestRuntime(t), &MemStore{}
	op := newOperator(t, b.URL, "sluice/gw-01/cmd/+/res")
	c := newController(t, rt, store, controlConfig(b.URL, []string{k.b64()}, true))
	startController(t, c)
	op2 := newOperator(t, b.URL, "sluice/gw-01/status")
	op2.waitFor("sluice/gw-01/status", func(p []byte) bool { return strings.Contains(string(p), "ready") })

	req := func(id, name, args string, expires time.Time, signed bool) []byte {
		doc := fmt.Sprintf(`{"id":%q,"name":%q,"target":"gw-01","expires_at":%q`, id, name, expires.UTC().Format(time.RFC3339Nano))
		if args != "" {
			doc += `,"args":` + args
		}
		doc += "}"
		if !signed {
			return []byte(doc)
		}
		s, err := Sign([]byte(doc), k.priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	final := func(name, id string) Response {
		var r Response
		op.waitFor("sluice/gw-01/cmd/"+name+"/res", func(p []byte) bool {
			return json.Unmarshal(p, &r) == nil && r.ID == id && r.Status != CmdAccepted
		})
		return r
	}
	soon := time.Now().Add(time.Minute)

	flush := req("f-1", "flush", "", soon, true)
	op.publish("sluice/gw-01/cmd/flush/req", false, flush)
	if r := final("flush", "f-1"); r.Status != CmdSucceeded {
		t.Fatalf("flush %+v", r)
	}
	op.publish("sluice/gw-01/cmd/flush/req", false, flush) // a redelivery
	if r := final("flush", "f-1"); r.Status != CmdRejected || !strings.Contains(fmt.Sprint(r.Detail), "duplicate") {
		t.Fatalf("repeated flush %+v", r)
	}
	if _, flushes := rt.count(); flushes != 1 {
		t.Fatalf("flush ran %d times", flushes)
	}

	op.publish("sluice/gw-01/cmd/test-rule/req", false, req("t-1", "test-rule",
		`{"rule":{"name":"hot","from":"telemetry","where":"temperature > 30"},"records":[{"temperature":20},{"temperature":40}]}`, soon, true))
	if r := final("test-rule", "t-1"); r.Status != CmdSucceeded || !strings.Contains(fmt.Sprint(r.Detail), "40") {
		t.Fatalf("test-rule %+v", r)
	}
	op.publish("sluice/gw-01/cmd/status/req", false, req("s-1", "status", "", soon, true))
	if r := final("status", "s-1"); r.Status != CmdSucceeded {
		t.Fatalf("status %+v", r)
	}

	for _, tc := range []struct {
		name, id, reason string
		payload          []byte
	}{
		{"reboot", "x-1", "unknown command", req("x-1", "reboot", "", soon, true)},
		{"ping", "x-2", "expired", req("x-2", "ping", "", time.Now().Add(-time.Second), true)},
		{"ping", "x-3", "unsigned", req("x-3", "ping", "", soon, false)},
		{"ping", "x-4", "command", req("x-4", "flush", "", soon, true)}, // signed for flush, sent to ping
		{"ping", "x-5", "24h0m0s ahead", req("x-5", "ping", "", time.Now().Add(48*time.Hour), true)},
	} {
		op.publish("sluice/gw-01/cmd/"+tc.name+"/req", false, tc.payload)
		if r := final(tc.name, tc.id); r.Status != CmdRejected || !strings.Contains(fmt.Sprint(r.Detail), tc.reason) {
			t.Fatalf("%s: %+v, want rejected for %q", tc.id, r, tc.reason)
		}
	}
	if _, flushes := rt.count(); flushes != 1 {
		t.Fatalf("flush ran %d times", flushes)
	}

	// The ids survive a restart.
	c2 := newController(t, rt, store, controlConfig(b.URL, []string{k.b64()}, true))
	var got []Response
	c2.HandleCommand(context.Background(), "flush", flush, func(r Response) { got = append(got, r) })
	if len(got) != 1 || got[0].Status != CmdRejected {
		t.Fatalf("after restart %+v", got)
	}
}

// TestControlSection: the control section's defaults and validation.
func TestControlSection(t *testing.T) {
	c, err := config.Parse([]byte(localYAML + "control: {enabled: true, url: \"tcp://127.0.0.1:1883\", groups: [plant-a]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ct := c.Control; ct.Prefix != "sluice/gw-01/" || ct.ClientID != "sluice-gw-01-control" || ct.HealthInterval != 30*time.Second {
		t.Fatalf("defaults %+v", ct)
	}
	_, err = config.Parse([]byte(localYAML + "control:\n  enabled: true\n  url: nope\n  prefix: a/+/\n  require_signed: true\n  trusted_keys: [abc]\n  health_interval: 10ms\n"))
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
		if e.Line == 0 {
			t.Errorf("%s: no line", e.Path)
		}
	}
	want := []string{"control.url", "control.prefix", "control.trusted_keys[0]", "control.health_interval"}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
}

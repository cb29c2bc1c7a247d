package control

import (
	"context"
	"testing"
	"time"
)

// FuzzDesired: any payload on a desired topic, own or group, is handled
// without a panic and, when not empty, rejected with a reason (require_signed
// is on and the fuzzer holds no trusted key).
func FuzzDesired(f *testing.F) {
	k := newKey(f)
	f.Add([]byte(desiredDoc(f, 1, "gw-01", remoteConfig, k.priv)), false)
	f.Add([]byte(desiredDoc(f, 2, "group/plant-a", remoteConfig, nil)), true)
	f.Add([]byte(`{"version":1e400,"target":"gw-01","config":null,"sig":"!!"}`), false)
	f.Add([]byte(`{"version":-1,"config":[1,2],"sig":5}`), false)
	f.Add([]byte(`[1]`), true)
	f.Add([]byte(`{"version":3,"target":"gw-01","config":{"control":{}}}{}`), false)
	stranger := newKey(f)
	rt := newTestRuntime(f)
	c := newController(f, rt, &MemStore{}, controlConfig("tcp://127.0.0.1:1", []string{stranger.b64()}, true, "plant-a"))
	f.Fuzz(func(t *testing.T, payload []byte, group bool) {
		src := "own"
		if group {
			src = "group/plant-a"
		}
		r := c.HandleDesired(context.Background(), src, payload)
		if len(payload) == 0 {
			if r != nil {
				t.Fatalf("empty payload reported %+v", r)
			}
			return
		}
		if r == nil || r.Status != StatusRejected || len(r.Errors) == 0 || r.Errors[0].Msg == "" {
			t.Fatalf("payload %q: report %+v", payload, r)
		}
		if applies, _ := rt.count(); applies != 0 {
			t.Fatal("applied a document nobody trusted signed")
		}
	})
}

// FuzzCommand: any payload on any command topic is answered with exactly one
// rejection and runs nothing.
func FuzzCommand(f *testing.F) {
	k := newKey(f)
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	signed, _ := Sign([]byte(`{"id":"a","name":"flush","target":"gw-01","expires_at":"`+exp+`"}`), k.priv)
	f.Add("flush", signed)
	f.Add("ping", []byte(`{"id":"b","expires_at":"`+exp+`"}`))
	f.Add("test-rule", []byte(`{"id":"c","args":{"rule":1},"expires_at":"x"}`))
	f.Add("reboot", []byte(`{"id":"","sig":""}`))
	f.Add("ping", []byte(`null`))
	stranger := newKey(f)
	rt := newTestRuntime(f)
	c := newController(f, rt, &MemStore{}, controlConfig("tcp://127.0.0.1:1", []string{stranger.b64()}, true))
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		var got []Response
		c.HandleCommand(context.Background(), name, payload, func(r Response) { got = append(got, r) })
		if len(got) != 1 || got[0].Status != CmdRejected || got[0].Detail == "" {
			t.Fatalf("%s %q: %+v", name, payload, got)
		}
		if _, flushes := rt.count(); flushes != 0 {
			t.Fatal("a command ran")
		}
	})
}

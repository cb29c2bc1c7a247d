package ingest

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/internal/testenv"
)

// waitFor polls cond until it holds; the source's state has no channel to
// wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMQTTMaxInflight publishes 60 QoS 1 messages to a source capped at 5
// unacked: it hands out exactly 5, then takes nothing until an ack frees a
// slot, and each ack lets exactly one more through. In the end every message
// arrived once and the count in flight never passed 5.
func TestMQTTMaxInflight(t *testing.T) {
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	const limit, total = 5, 60
	src, out, _, _ := startSourceWith(t, MQTTOptions{URL: m.URL, ClientID: "inflight-test", Topics: []string{"t/#"}, QoS: 1,
		KeepAlive: 30 * time.Second, MaxInflight: limit})
	if src.made.Load() != 0 {
		t.Fatalf("%d slots made before any message", src.made.Load())
	}

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL).SetClientID("inflight-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(50)
	for i := range total {
		if tok := pub.Publish(fmt.Sprintf("t/%d", i), 1, false, fmt.Sprintf(`{"i":%d}`, i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}

	seen := map[string]int{}
	var held []Message
	inflight, maxInflight := 0, 0
	take := func() {
		t.Helper()
		select {
		case msg := <-out:
			seen[string(msg.Payload)]++
			held = append(held, msg)
			inflight++
			maxInflight = max(maxInflight, inflight)
		case <-time.After(10 * time.Second):
			t.Fatalf("no message within 10s (%d received)", len(seen))
		}
	}
	for range limit {
		take()
	}
	// At the cap: the handler waits for a slot and hands out nothing more.
	waitFor(t, "source blocked at the cap", src.Blocked)
	if len(out) != 0 || src.Inflight() != limit {
		t.Fatalf("at the cap: %d more handed out, %d in flight; want 0 and %d", len(out), src.Inflight(), limit)
	}
	// One ack, one more message, and the source is at the cap again.
	held[0].Acker.Ack()
	held, inflight = held[1:], inflight-1
	take()
	waitFor(t, "source blocked again", src.Blocked)
	if len(out) != 0 || src.Inflight() != limit {
		t.Fatalf("after one ack: %d more handed out, %d in flight", len(out), src.Inflight())
	}
	// Drain the rest acking two at a time, as a pipeline's commits would.
	for len(seen) < total {
		for i := 0; i < 2 && len(held) > 0; i++ {
			held[0].Acker.Ack()
			held, inflight = held[1:], inflight-1
		}
		for len(out) > 0 || (inflight < limit && len(seen) < total) {
			take()
			if got := src.Inflight(); got > limit {
				t.Fatalf("%d in flight, cap %d", got, limit)
			}
		}
	}
	for _, msg := range held {
		msg.Acker.Ack()
	}
	if maxInflight != limit {
		t.Errorf("at most %d in flight, want exactly %d", maxInflight, limit)
	}
	for i := range total {
		if n := seen[fmt.Sprintf(`{"i":%d}`, i)]; n != 1 {
			t.Errorf("message %d arrived %d times", i, n)
		}
	}
	waitFor(t, "every slot free", func() bool { return src.Inflight() == 0 })
	// Slots are made as the messages in flight first need them, and reused.
	if got := src.made.Load(); got != limit {
		t.Errorf("%d slots made for a cap of %d", got, limit)
	}
}

package ingest

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/internal/testenv"
)

// TestMQTTAcksReachTheBroker acks 50 messages at QoS 1 and at QoS 2 (acks
// are written in batches, and paho's store keeps no received PUBLISH),
// closes the source right after its acks were written, publishes a marker
// to the offline session and reconnects: the broker resends unacked
// messages before queued ones, so the marker coming first, and alone, shows
// that every ack arrived.
func TestMQTTAcksReachTheBroker(t *testing.T) {
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	const total = 50
	for _, qos := range []byte{1, 2} {
		id := fmt.Sprintf("ack-test-%d", qos)
		src, out, _, stop := startSource(t, m.URL, id, qos, time.Millisecond)
		pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL).SetClientID(id + "-pub"))
		if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		for i := range total {
			if tok := pub.Publish("t/x", qos, false, fmt.Sprintf(`{"i":%d}`, i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("qos %d: publish %d: %v", qos, i, tok.Error())
			}
		}
		for i := range total {
			select {
			case msg := <-out:
				if want := fmt.Sprintf(`{"i":%d}`, i); string(msg.Payload) != want {
					t.Fatalf("qos %d: message %d is %s, want %s", qos, i, msg.Payload, want)
				}
				msg.Acker.Ack()
			case <-time.After(10 * time.Second):
				t.Fatalf("qos %d: message %d never arrived", qos, i)
			}
		}
		// QoS 2: a PUBREC per message, then a PUBCOMP per PUBREL.
		acks := uint64(total) * uint64(qos)
		waitFor(t, fmt.Sprintf("qos %d: %d acks written", qos, acks), func() bool { return src.AcksSent.Load() == acks })
		stop()
		if tok := pub.Publish("t/marker", 1, false, "marker"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		pub.Disconnect(50)

		_, out2, _, stop2 := startSource(t, m.URL, id, qos, time.Millisecond)
		select {
		case msg := <-out2:
			if msg.Topic != "t/marker" {
				t.Fatalf("qos %d: after reconnecting the first message is %s %s, want the marker", qos, msg.Topic, msg.Payload)
			}
			msg.Acker.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("qos %d: the marker never arrived", qos)
		}
		stop2()
		if len(out2) != 0 {
			t.Errorf("qos %d: %d more messages after the marker", qos, len(out2))
		}
	}
}

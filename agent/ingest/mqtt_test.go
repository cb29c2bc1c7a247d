package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/internal/testenv"
)

// startSource starts a source subscribed to t/# at qos, waits for the
// subscription and returns it with its messages, the session-present flags
// of its connects and a function that closes it (also done at cleanup).
func startSource(t *testing.T, url, clientID string, qos byte, coalesce time.Duration) (*MQTT, chan Message, chan bool, func()) {
	t.Helper()
	return startSourceWith(t, MQTTOptions{URL: url, ClientID: clientID, Topics: []string{"t/#"}, QoS: qos, KeepAlive: 30 * time.Second, ReadCoalesce: coalesce})
}

// startSourceWith is startSource with every option given.
func startSourceWith(t *testing.T, o MQTTOptions) (*MQTT, chan Message, chan bool, func()) {
	t.Helper()
	out := make(chan Message, 100)
	sessions := make(chan bool, 10)
	src := NewMQTT(o)
	src.SessionPresent = func(p bool) { sessions <- p }
	ctx, cancel := context.WithCancel(context.Background())
	stop := func() { src.Close(); cancel() }
	t.Cleanup(stop)
	if err := src.Start(ctx, out); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.Subscribed():
	case <-time.After(10 * time.Second):
		t.Fatal("not subscribed within 10s")
	}
	return src, out, sessions, stop
}

func publishOne(t *testing.T, url, topic, payload string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(50)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}

// TestSingleMessageAfterSilenceIsNotHeld checks that read coalescing delays
// a lone message by at most about its setting: the wait happens once before
// a read, it never waits for more data to arrive.
func TestSingleMessageAfterSilenceIsNotHeld(t *testing.T) {
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	const coalesce = 20 * time.Millisecond
	_, out, _, _ := startSource(t, m.URL, "coalesce-test", 1, coalesce)
	for i := 0; i < 3; i++ {
		sent := time.Now()
		publishOne(t, m.URL, "t/x", fmt.Sprintf(`{"i":%d}`, i))
		select {
		case msg := <-out:
			// The publisher's own round trip is in the figure too; 200ms
			// is far below "waits for the next message" and far above
			// coalesce plus loopback latency.
			if d := time.Since(sent); d > 200*time.Millisecond {
				t.Errorf("message %d took %v with coalescing at %v", i, d, coalesce)
			}
			msg.Acker.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d never arrived", i)
		}
	}
}

// TestSessionPresentIsReported checks the CONNACK sniffing: a new persistent
// session reports false, the same client id reconnecting reports true.
func TestSessionPresentIsReported(t *testing.T) {
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	src, _, sessions, _ := startSource(t, m.URL, "session-test", 1, 0)
	if p := <-sessions; p {
		t.Fatal("a first connection reported a present session")
	}
	src.Close()
	_, _, sessions2, _ := startSource(t, m.URL, "session-test", 1, 0)
	if p := <-sessions2; !p {
		t.Fatal("reconnecting with the same client id did not report the session")
	}
}

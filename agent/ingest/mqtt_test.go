package ingest

import (
	"context"
	"fmt"
	"strings"
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

// publishQoS publishes payloads on topic at qos, in order, and waits until
// the last was written (QoS 0) or acknowledged (QoS 1).
func publishQoS(t *testing.T, url, topic string, qos byte, payloads ...string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(50)
	var tok mqtt.Token
	for _, p := range payloads {
		tok = c.Publish(topic, qos, false, p)
	}
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
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
	// QoS 1 goes through paho, QoS 0 through the connection's own reader
	// (qos0.go): both must hand a lone message over.
	for i := 0; i < 6; i++ {
		qos := byte(i % 2)
		sent := time.Now()
		publishQoS(t, m.URL, "t/x", qos, fmt.Sprintf(`{"i":%d}`, i))
		select {
		case msg := <-out:
			// The publisher's own round trip is in the figure too; 200ms
			// is far below "waits for the next message" and far above
			// coalesce plus loopback latency.
			if d := time.Since(sent); d > 200*time.Millisecond {
				t.Errorf("message %d (QoS %d) took %v with coalescing at %v", i, qos, d, coalesce)
			}
			if qos == 1 {
				msg.Acker.Ack()
			} else if msg.Batch == nil || len(msg.Batch.Items) != 1 {
				t.Fatalf("QoS 0 message %d: got %+v, want a batch of one", i, msg)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d (QoS %d) never arrived", i, qos)
		}
	}
}

// startBrokerAndPublisher starts mosquitto and connects a publisher to it;
// both stop at cleanup.
func startBrokerAndPublisher(t *testing.T, clientID string) (*testenv.Mosquitto, mqtt.Client) {
	t.Helper()
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL).SetClientID(clientID))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { pub.Disconnect(50) })
	return m, pub
}

// TestQoS0AndQoS1FromTheBroker publishes through mosquitto 2,000 QoS 0
// messages on 4 topics and 20 QoS 1 messages between them, and checks that
// each arrives once, the QoS 0 ones in batches, every topic in order, and
// the QoS 1 ones through paho with an Acker.
func TestQoS0AndQoS1FromTheBroker(t *testing.T) {
	m, pub := startBrokerAndPublisher(t, "qos0-pub")
	src, out, _, _ := startSource(t, m.URL, "qos0-test", 1, time.Millisecond)
	const topics, perTopic = 4, 500
	published := make(chan error, 1)
	go func() {
		var tok mqtt.Token
		for i := 0; i < perTopic; i++ {
			for k := 0; k < topics; k++ {
				pub.Publish(fmt.Sprintf("t/%d", k), 0, false, fmt.Sprintf(`{"k":%d,"i":%d}`, k, i))
			}
			if i%25 == 0 {
				tok = pub.Publish("t/q1", 1, false, fmt.Sprintf(`{"i":%d}`, i))
			}
		}
		tok.Wait()
		published <- tok.Error()
	}()
	next := make([]int, topics) // the next i expected per topic
	var qos0, qos1, batches int
	for qos0 < topics*perTopic || qos1 < perTopic/25 {
		select {
		case msg := <-out:
			if msg.Batch == nil {
				if msg.Acker == nil || msg.Topic != "t/q1" {
					t.Fatalf("a message outside a batch without an Acker: %+v", msg)
				}
				msg.Acker.Ack()
				qos1++
				continue
			}
			batches++
			for _, it := range msg.Batch.Items {
				var k, i int
				if _, err := fmt.Sscanf(string(it.Payload), `{"k":%d,"i":%d}`, &k, &i); err != nil || it.Topic != fmt.Sprintf("t/%d", k) {
					t.Fatalf("QoS 0 item %q on %s", it.Payload, it.Topic)
				}
				if i != next[k] {
					t.Fatalf("topic t/%d: got message %d, want %d", k, i, next[k])
				}
				next[k]++
				qos0++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d QoS 0 and %d QoS 1 messages, want %d and %d", qos0, qos1, topics*perTopic, perTopic/25)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if qos0 != topics*perTopic || qos1 != perTopic/25 {
		t.Fatalf("got %d QoS 0 and %d QoS 1 messages, want %d and %d", qos0, qos1, topics*perTopic, perTopic/25)
	}
	if got := src.Received.Load(); got != topics*perTopic+perTopic/25 {
		t.Fatalf("Received %d, want %d", got, topics*perTopic+perTopic/25)
	}
	t.Logf("%d QoS 0 messages in %d batches", qos0, batches)
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

// TestQoS0LargeAndSmallKeepTheirOrder publishes through mosquitto QoS 0
// messages on one topic, every other one larger than the connection's
// 32 KiB buffer, and checks that the source hands them out in order (the
// large ones are read by the connection too, not by paho).
func TestQoS0LargeAndSmallKeepTheirOrder(t *testing.T) {
	m, pub := startBrokerAndPublisher(t, "order-pub")
	_, out, _, _ := startSource(t, m.URL, "order-test", 0, time.Millisecond)
	const n = 200
	pad := strings.Repeat("x", 40<<10)
	go func() {
		for i := 0; i < n; i++ {
			p := fmt.Sprintf(`{"i":%d}`, i)
			if i%2 == 0 {
				p = fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad)
			}
			pub.Publish("t/same", 0, false, p)
		}
	}()
	for next := 0; next < n; {
		select {
		case msg := <-out:
			if msg.Batch == nil {
				t.Fatalf("a QoS 0 message outside a batch: %.40q", msg.Payload)
			}
			for _, it := range msg.Batch.Items {
				var i int
				if _, err := fmt.Sscanf(string(it.Payload), `{"i":%d`, &i); err != nil || i != next {
					t.Fatalf("got message %.20q, want %d", it.Payload, next)
				}
				wantLen := len(fmt.Sprintf(`{"i":%d}`, i))
				if i%2 == 0 {
					wantLen += len(`,"pad":""`) + len(pad)
				}
				if len(it.Payload) != wantLen {
					t.Fatalf("message %d: %d bytes, want %d", i, len(it.Payload), wantLen)
				}
				next++
			}
			msg.Batch.Release()
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d messages", next, n)
		}
	}
}

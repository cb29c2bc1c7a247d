package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDeadLetterReachesJetStream runs the agent against mosquitto and
// JetStream with dead_letters: {to: cloud}: a malformed payload arrives on
// the stream on subject telemetry.<gateway>._deadletters with its reason and
// payload, the good messages beside it are counted exactly, and the bad one
// was acked (the broker does not redeliver it after a restart).
func TestDeadLetterReachesJetStream(t *testing.T) {
	r := newRig(t)
	cfg := fmt.Sprintf(`gateway: gw-test
data_dir: %s
api: {listen: "127.0.0.1:0"}
inputs:
  - name: telemetry
    mqtt:
      url: %s
      client_id: sluice-dl
      topics: [sensors/+/telemetry]
      max_inflight: 50
    topic: sensors/{device}/telemetry
    units: {temp_f: F->C}
    dead_letters: {to: cloud}
rules:
  - name: temp_1s
    from: telemetry
    group_by: [device]
    window: {tumbling: 1s}
    select: {n: count(*), sum_c: sum(temp_f)}
uplinks:
  - name: cloud
    nats: {url: %q, subject: "telemetry.{gateway}.{rule}"}
`, filepath.Join(r.dir, "data"), r.broker.URL, r.nc.ConnectedUrl())
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.startAgent()

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(r.broker.URL).SetClientID("dl-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(50)
	send := func(topic, payload string) {
		t.Helper()
		if tok := pub.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	for i := range 100 {
		send(fmt.Sprintf("sensors/d%d/telemetry", i%4), `{"temp_f":212}`)
		if i == 50 {
			send("sensors/d0/telemetry", `{"temp_f":212,`)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "TELEMETRY", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"telemetry.gw-test._deadletters"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no dead letter on telemetry.gw-test._deadletters: %v", err)
	}
	var dl struct {
		Gateway, Rule, Input, Topic, Reason, Payload string
		Seq                                          uint64
	}
	if err := json.Unmarshal(msg.Data(), &dl); err != nil {
		t.Fatalf("%v: %s", err, msg.Data())
	}
	if dl.Gateway != "gw-test" || dl.Rule != "_deadletters" || dl.Input != "telemetry" || dl.Topic != "sensors/d0/telemetry" ||
		dl.Reason != "json at byte 14: expected a string" || dl.Payload != `{"temp_f":212,` || dl.Seq == 0 {
		t.Errorf("dead letter %s", msg.Data())
	}
	if id := msg.Headers().Get("Nats-Msg-Id"); id != fmt.Sprintf("gw-test-%d", dl.Seq) {
		t.Errorf("Nats-Msg-Id %q for seq %d", id, dl.Seq)
	}
	if got, err := r.collector.WaitSum("n", 100, 30*time.Second); err != nil {
		t.Fatalf("%v (got %v)", err, got)
	}
	if got := r.collector.SumValue("sum_c"); got != 100*100 {
		t.Errorf("sum of °C %v, want %d (212 °F is 100 °C)", got, 100*100)
	}
	// The dead letter was acked: after a restart nothing comes back.
	r.agent.stop(t)
	r.startAgent()
	if _, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
		t.Error("a second dead letter arrived after the restart: the first was not acked")
	}
}

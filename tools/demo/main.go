// Command demo runs Sluice end to end on one machine with nothing installed
// but Go: an embedded NATS server with JetStream, an MQTT broker (the agent's
// built-in one, run in this process), the agent, firmware-sim, and a consumer
// that prints every upstream envelope as it arrives. Ctrl-C stops
// everything.
//
//	go run -tags broker ./tools/demo --sluice bin/sluice --sim bin/firmware-sim --config examples/demo.yaml
//
// Without the tag broker there is no broker to run here; then pass --mqtt-listen ""
// and start one (mosquitto -p 11883) yourself.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/agent/broker"
)

func main() {
	sluiceBin := flag.String("sluice", "bin/sluice", "agent binary")
	simBin := flag.String("sim", "bin/firmware-sim", "simulator binary")
	cfg := flag.String("config", "examples/demo.yaml", "agent config")
	natsPort := flag.Int("nats-port", 14222, "NATS port (the config's uplink URL)")
	mqttListen := flag.String("mqtt-listen", "127.0.0.1:11883", "address of the MQTT broker this command runs (the config's input URL); empty: use one already running there")
	devices := flag.Int("devices", 20, "simulated devices")
	rate := flag.Float64("rate", 100, "messages per second, all devices together")
	dashboard := flag.String("dashboard", "http://127.0.0.1:8080/", "the agent's dashboard address (its config's api.listen)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("demo: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, err := os.MkdirTemp("", "sluice-demo-js-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(store)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: *natsPort, JetStream: true, StoreDir: store, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "TELEMETRY", Subjects: []string{"telemetry.>"}, Duplicates: 2 * time.Minute, AllowBatchPublish: true}); err != nil {
		log.Fatal(err)
	}
	if _, err := nc.Subscribe("telemetry.>", func(m *nats.Msg) {
		fmt.Printf("%s\n", m.Data)
	}); err != nil {
		log.Fatal(err)
	}
	log.Printf("nats-server with JetStream on %s; stream TELEMETRY covers telemetry.>", ns.ClientURL())

	brokerURL := "tcp://127.0.0.1:11883"
	if *mqttListen != "" {
		b, err := broker.Start(*mqttListen, slog.New(slog.DiscardHandler))
		if err != nil {
			log.Fatalf("mqtt broker: %v", err)
		}
		defer b.Close()
		brokerURL = "tcp://" + b.Addr()
		log.Printf("mqtt broker on %s", brokerURL)
	}

	agent := exec.Command(*sluiceBin, "run", "--config", *cfg)
	agent.Stdout, agent.Stderr = os.Stderr, os.Stderr
	if err := agent.Start(); err != nil {
		log.Fatal(err)
	}
	// A small plant: mostly temperature sensors, some vibration sensors,
	// and rare spikes for the overheat alert to catch.
	sim := exec.Command(*simBin, "--broker", brokerURL, "--devices", fmt.Sprint(*devices), "--rate", fmt.Sprint(*rate), "--qos", "1", "--quiet",
		"--profile", "temphum:4,vibration:1", "--topic", "plant/{profile}/{device}", "--spike", "0.01", "--cmd-topic", "")
	sim.Stdout, sim.Stderr = os.Stderr, os.Stderr
	if err := sim.Start(); err != nil {
		agent.Process.Signal(os.Interrupt)
		agent.Wait()
		log.Fatal(err)
	}
	log.Printf("agent (pid %d) and firmware-sim (pid %d) running; summaries and alerts print below as they arrive; Ctrl-C stops", agent.Process.Pid, sim.Process.Pid)
	log.Printf("dashboard: %s", *dashboard)

	simDone, agentDone := waitChan(sim), waitChan(agent)
	select {
	case <-ctx.Done():
	case <-simDone:
		log.Print("firmware-sim exited")
	case <-agentDone:
		log.Print("the agent exited")
	}
	log.Print("stopping")
	sim.Process.Signal(os.Interrupt)
	agent.Process.Signal(os.Interrupt)
	waitOrKill(sim, simDone)
	waitOrKill(agent, agentDone)
}

func waitChan(c *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	return done
}

func waitOrKill(c *exec.Cmd, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}

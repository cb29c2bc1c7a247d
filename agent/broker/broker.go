//go:build broker

// Package broker runs an optional MQTT broker inside the agent (mochi-mqtt),
// for gateways that have none. It is configured for a consumer that acks only
// after a durable commit: offline queues and in-flight windows are raised
// above mochi's defaults, which would cap them (DESIGN.md "Dependencies").
//
// It is compiled in only with the build tag "broker" (make build
// TAGS=broker): it adds 0.5 MiB to the arm64 binary, which most gateways,
// running mosquitto already, would carry for nothing, and the default build
// has to fit the 13 MiB budget.
package broker

import (
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Built reports whether this binary has the built-in broker.
const Built = true

// Broker is a running built-in broker.
type Broker struct {
	srv *mqtt.Server
	tcp *listeners.TCP
}

// Start listens on addr (host:port) and serves until Close.
// Any client may connect: bind it to loopback unless the network is trusted.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = 65535
	// mochi disconnects a publisher with more unacked QoS 1/2 messages than
	// this (1024 by default): a device flushing its own backlog would hit it.
	caps.ReceiveMaximum = 65535
	caps.MaximumClientWritesPending = 64 * 1024
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, InlineClient: false, Logger: log.With("component", "broker")})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker listen %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker serve %s: %w", addr, err)
	}
	return &Broker{srv: srv, tcp: tcp}, nil
}

// Addr returns the address the broker listens on (useful with port 0).
func (b *Broker) Addr() string { return b.tcp.Address() }

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// allowAll lets every client connect and use every topic. mochi's own
// auth.AllowHook would pull gopkg.in/yaml.v3 into the binary for its ledger.
type allowAll struct{ mqtt.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

//go:build !broker

package broker

import (
	"errors"
	"log/slog"
)

// Built reports whether this binary has the built-in broker: not without
// the build tag "broker" (see broker.go).
const Built = false

// ErrNotBuilt is returned by Start in a binary built without the broker.
var ErrNotBuilt = errors.New("this sluice has no built-in broker: build it with the tag broker (make build TAGS=broker) or use an external broker such as mosquitto")

// Broker is the built-in broker, absent from this build.
type Broker struct{}

// Start fails: this build has no built-in broker.
func Start(string, *slog.Logger) (*Broker, error) { return nil, ErrNotBuilt }

// Addr returns "".
func (b *Broker) Addr() string { return "" }

// Close does nothing.
func (b *Broker) Close() error { return nil }

// Package uplink delivers committed buffer entries upstream (NATS / JetStream,
// Kafka) and reports a batch delivered only when the upstream acknowledged it.
package uplink

import (
	"context"

	"github.com/sluiceio/sluice/buffer"
)

// Uplink delivers batches of entries upstream.
//
// Deliver is called from one goroutine at a time (the forwarder that owns the
// uplink's cursor). It returns nil only when the upstream has acknowledged every
// entry of the batch; on error the whole batch is retried later, so an
// implementation must make redelivery harmless (JetStream's Nats-Msg-Id, Kafka's
// idempotent producer).
type Uplink interface {
	Name() string
	Deliver(ctx context.Context, batch []buffer.Entry) error
	Close() error
}

// Package uplink delivers committed buffer entries upstream (NATS / JetStream,
// Kafka) and reports a batch delivered only when the upstream acknowledged it.
package uplink

import (
	"context"
	"errors"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

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

// PermanentError is the error of a delivery that failed for one entry in a
// way no retry can mend: the upstream rejected the entry for what it is (its
// subject or topic is invalid, it is larger than the upstream accepts).
// Other entries of the batch may or may not have been delivered. The
// forwarder sets such an entry aside as rejected and delivers the rest,
// rather than retrying forever behind it.
type PermanentError struct {
	Seq uint64 // the entry's
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// permanent wraps err, the failure of the entry seq, as a PermanentError.
func permanent(seq uint64, err error) error { return &PermanentError{Seq: seq, Err: err} }

// IsUnreachable reports whether err says the upstream could not be reached
// or did not answer in time (not connected, a timeout, no responders, a
// network error), rather than that it answered and refused something. A
// client may still believe itself connected then (a link that dropped
// silently, a leaf node whose own upstream is gone).
func IsUnreachable(err error) bool {
	for _, target := range unreachable {
		if errors.Is(err, target) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// unreachable are the errors of IsUnreachable, besides net.Error.
var unreachable = []error{ErrNotConnected, context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders,
	nats.ErrConnectionClosed, nats.ErrDisconnected, jetstream.ErrAsyncPublishTimeout, jetstream.ErrNoStreamResponse,
	kgo.ErrRecordTimeout}

// IsPermanent reports whether err is a PermanentError and returns it.
func IsPermanent(err error) (*PermanentError, bool) {
	var p *PermanentError
	ok := errors.As(err, &p)
	return p, ok
}

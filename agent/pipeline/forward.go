package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// Forwarder moves entries from the buffer to one uplink: it reads batches from
// the uplink's own cursor, delivers them, and acks the cursor only after the
// upstream acknowledged the batch. A failing uplink is retried with capped
// exponential backoff and jitter; it never blocks other uplinks or ingest, as
// the buffer absorbs the backlog.
type Forwarder struct {
	Buffer    *buffer.Buffer
	Uplink    uplink.Uplink
	BatchSize int
	Logger    *slog.Logger
	// OnAck, when set, is called after the cursor moved to pos.
	OnAck func(pos buffer.Position)

	Delivered atomic.Uint64
	Failures  atomic.Uint64
}

// Run forwards until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	name := f.Uplink.Name()
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("uplink", name)
	size := f.BatchSize
	if size <= 0 {
		size = 500
	}
	cursor, err := f.Buffer.Cursor(name)
	if err != nil {
		return err
	}
	var batch []buffer.Entry
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		changed := f.Buffer.Changed()
		var scanned buffer.Position
		batch, scanned, err = f.Buffer.Read(name, cursor, size, batch[:0])
		if err != nil {
			log.Error("read buffer", "err", err)
			backoff = f.wait(ctx, backoff)
			continue
		}
		if len(batch) > 0 {
			if err := f.Uplink.Deliver(ctx, batch); err != nil {
				if errors.Is(err, context.Canceled) && ctx.Err() != nil {
					return nil
				}
				f.Failures.Add(1)
				log.Warn("deliver failed; retrying", "err", err, "entries", len(batch), "first_seq", batch[0].Seq)
				backoff = f.wait(ctx, backoff)
				continue
			}
			f.Delivered.Add(uint64(len(batch)))
			backoff = 0
		}
		if scanned != cursor {
			if err := f.Buffer.Ack(name, scanned); err != nil {
				log.Error("ack buffer", "err", err)
				backoff = f.wait(ctx, backoff)
				continue
			}
			cursor = scanned
			if f.OnAck != nil {
				f.OnAck(cursor)
			}
		}
		if len(batch) < size && scanned == cursor {
			select {
			case <-changed:
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// wait sleeps for the next backoff step (100ms doubling to 30s, ±20%
// jitter) and returns it.
func (f *Forwarder) wait(ctx context.Context, prev time.Duration) time.Duration {
	next := min(max(prev*2, 100*time.Millisecond), 30*time.Second)
	d := time.Duration(float64(next) * (0.8 + 0.4*rand.Float64()))
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	return next
}

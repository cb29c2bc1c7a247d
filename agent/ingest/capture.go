package ingest

import "github.com/sluiceio/sluice/rules"

// Capture runs a decoder and a stage as one Decoder and keeps the payload of
// the last record that failed, whole, for a dead letter sent upstream (the
// pipeline's own sample holds its first bytes only). Between a failed Decode
// and the next call the pipeline reports the dead letter, whose hook calls
// TakeFailed; a message rejected before decoding (too large) finds nothing
// there.
//
// Like the decoder it wraps, a Capture is used by one goroutine.
type Capture struct {
	Decoder Decoder
	Stage   *Stage // nil: none
	failed  []byte
}

// Decode decodes payload into r and applies the stage.
func (c *Capture) Decode(payload []byte, r *rules.Record) error {
	err := c.Decoder.Decode(payload, r)
	if err == nil && c.Stage != nil {
		err = c.Stage.Apply(r)
	}
	if err != nil {
		c.failed = payload
	}
	return err
}

// TakeFailed returns the payload of the last failed record once, or nil.
func (c *Capture) TakeFailed() []byte {
	p := c.failed
	c.failed = nil
	return p
}

// Package ingest holds Sluice's sources (MQTT today) and the input stage that
// turns their payloads into records (decoding). Sources know nothing of rules
// or the buffer: they emit Messages, each with a way to release its input
// position, and never release a position themselves.
package ingest

import "time"

// Acker releases a message's input position. For MQTT it sends the PUBACK.
// The pipeline calls Ack only after the commit that covers the message.
type Acker interface{ Ack() }

// Message is one payload from a source.
type Message struct {
	Input    int    // index of the input in the agent's config
	Topic    string // MQTT topic, or the file of a log line
	Payload  []byte
	Received time.Time
	Acker    Acker // nil when nothing needs releasing (QoS 0)

	// MQTT delivery facts that make redelivery after a crash exact.
	PacketID uint16
	Dup      bool

	// Position, when not nil, is saved in the same commit as the outputs
	// this message caused (a log file's offset): the source resumes from it
	// after a restart. Sources that need no saving leave it nil.
	Position *Position

	// Batch, when not nil, holds the messages instead: a source that reads
	// many at once (MQTT QoS 0) hands them over in one send. Only Input is
	// set beside it.
	Batch *Batch
}

// Batch is messages read together, with no Acker or Position: MQTT QoS 0
// messages of one socket read. Their topics and payloads live in memory the
// source reuses once the batch is released.
type Batch struct {
	Received time.Time
	Items    []Item

	arena []byte        // the items' topics and payloads
	free  chan<- *Batch // where Release returns it (nil: nowhere)
}

// Release hands the batch back to its source, which fills it again. Call it
// once nothing refers to its items' topics and payloads: the rules clone
// what they keep of a record, the pipeline encodes outputs as it makes them,
// so after the rules processed its records. The memory is zeroed first, so
// that anything that still pointed into it would read zeros, which the
// end-to-end tests' exact values would show, rather than a later message.
func (b *Batch) Release() {
	if b.free == nil {
		return
	}
	clear(b.arena)
	b.arena = b.arena[:0]
	clear(b.Items)
	b.Items = b.Items[:0]
	select {
	case b.free <- b:
	default: // the source keeps enough: this one goes to the GC
	}
}

// Item is one message of a Batch.
type Item struct {
	Topic   string
	Payload []byte
}

// Position is an input position the pipeline saves with a commit: Key under
// Scope gets Value. A later position for the same key replaces it.
type Position struct {
	Scope string // e.g. "log/<input>"
	Key   []byte // e.g. the file identity
	Value []byte // e.g. the offset after this line
}

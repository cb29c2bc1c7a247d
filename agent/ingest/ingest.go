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
}

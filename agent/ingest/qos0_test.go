package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// mqttPacket encodes a fixed header (first byte, remaining length) and body.
func mqttPacket(first byte, body []byte) []byte {
	p := []byte{first}
	n := len(body)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

// wirePublish encodes a PUBLISH; qos > 0 adds packet id 7.
func wirePublish(topic string, qos byte, retain bool, payload []byte) []byte {
	first := 0x30 | qos<<1
	if retain {
		first |= 1
	}
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	if qos > 0 {
		body = append(body, 0, 7)
	}
	return mqttPacket(first, append(body, payload...))
}

// qos0Pipe returns a brokerConn over one end of a net.Pipe, whose batches
// go to the returned channel, and the broker's end. A net.Pipe hands each
// Write to the reader in reads no larger than it, so the test decides where
// the stream is cut.
// It holds up to room batches (a packet has at least 2 bytes: a stream of n
// bytes makes at most n/2).
func qos0Pipe(t *testing.T, room int) (*brokerConn, net.Conn, chan *Batch) {
	t.Helper()
	client, broker := net.Pipe()
	batches := make(chan *Batch, room)
	bc := newBrokerConn(client, connOptions{qos0: func(b *Batch) { batches <- b }}, nil, nil)
	t.Cleanup(func() { bc.Close(); broker.Close() })
	return bc, broker, batches
}

// readPaho reads what paho would: control packets, until the connection
// fails; the packets go to the returned channel, which is closed then.
func readPaho(bc *brokerConn) chan packets.ControlPacket {
	out := make(chan packets.ControlPacket, 100)
	go func() {
		defer close(out)
		for {
			p, err := packets.ReadPacket(bc)
			if err != nil {
				return
			}
			out <- p
		}
	}()
	return out
}

// TestQoS0ReaderSplitsTheStream writes a stream that mixes QoS 0 PUBLISH
// packets (one larger than the buffer) with packets paho must see, cut into
// pieces of 3 bytes so that every header and body is split, and checks that
// the QoS 0 messages come out as batches, in order and byte for byte, and
// paho reads exactly the other packets, in order.
func TestQoS0ReaderSplitsTheStream(t *testing.T) {
	bc, broker, batches := qos0Pipe(t, 100)
	big := bytes.Repeat([]byte("x"), 40<<10) // larger than the 32 KiB buffer
	long := bytes.Repeat([]byte("y"), 300)   // a two-byte remaining length
	stream := slices.Concat(
		mqttPacket(0x20, []byte{0, 0}), // CONNACK
		wirePublish("a/1", 0, false, []byte(`{"v":1}`)),
		wirePublish("b/2", 0, true, []byte(`{"v":2}`)),
		wirePublish("c/3", 1, false, []byte(`{"v":3}`)),
		mqttPacket(0xd0, nil), // PINGRESP
		wirePublish("d/4", 0, false, nil),
		wirePublish("e/5", 0, false, long),
		wirePublish("f/6", 0, false, big),
		mqttPacket(0x90, []byte{0, 1, 0}), // SUBACK
		wirePublish("g/7", 0, false, []byte(`{"v":7}`)),
	)
	paho := readPaho(bc)
	go func() {
		for i := 0; i < len(stream); i += 3 {
			if _, err := broker.Write(stream[i:min(i+3, len(stream))]); err != nil {
				return
			}
		}
	}()
	// g/7 comes last and alone: its batch must be handed over although
	// nothing follows it.
	want := []Item{{"a/1", []byte(`{"v":1}`)}, {"b/2", []byte(`{"v":2}`)}, {"d/4", []byte{}}, {"e/5", long}, {"f/6", big}, {"g/7", []byte(`{"v":7}`)}}
	var got []Item
	for len(got) < len(want) {
		select {
		case b := <-batches:
			if len(b.Items) == 0 || b.Received.IsZero() {
				t.Fatalf("batch %+v: want messages and a receive time", b)
			}
			got = append(got, b.Items...)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d QoS 0 messages, want %d", len(got), len(want))
		}
	}
	for i := range want {
		if i >= len(got) || got[i].Topic != want[i].Topic || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("QoS 0 message %d: got %.40q, want %.40q", i, got, want)
		}
	}
	wantPaho := []string{"CONNACK", "PUBLISH c/3 qos 1", "PINGRESP", "SUBACK"}
	for i, w := range wantPaho {
		var p packets.ControlPacket
		select {
		case p = <-paho:
		case <-time.After(5 * time.Second):
			t.Fatalf("paho got %d packets, want %q", i, wantPaho)
		}
		var s string
		switch p := p.(type) {
		case *packets.ConnackPacket:
			s = "CONNACK"
		case *packets.PingrespPacket:
			s = "PINGRESP"
		case *packets.SubackPacket:
			s = "SUBACK"
		case *packets.PublishPacket:
			s = fmt.Sprintf("PUBLISH %s qos %d", p.TopicName, p.Qos)
		default:
			s = p.String()
		}
		if s != w {
			t.Fatalf("paho packet %d: got %s, want %s", i, s, w)
		}
	}
	broker.Close()
	if p, ok := <-paho; ok {
		t.Fatalf("paho got a packet more: %v", p)
	}
	select {
	case b := <-batches:
		t.Fatalf("a batch more: %+v", b)
	default:
	}
}

// TestQoS0ReaderPassesAMalformedHeaderToPaho checks that a remaining length
// of more than four bytes turns the reader off for the connection: paho
// reads every byte from there on (and fails the connection, as without the
// reader), and a message before it was still delivered.
func TestQoS0ReaderPassesAMalformedHeaderToPaho(t *testing.T) {
	bc, broker, batches := qos0Pipe(t, 100)
	connack := mqttPacket(0x20, []byte{0, 0})
	bad := []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 'z'}
	tail := wirePublish("t/2", 0, false, []byte("2"))
	go func() {
		broker.Write(slices.Concat(connack, wirePublish("t/1", 0, false, []byte("1")), bad, tail))
		broker.Close()
	}()
	got, err := io.ReadAll(bc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if want := slices.Concat(connack, bad, tail); !bytes.Equal(got, want) {
		t.Fatalf("paho read %q, want %q", got, want)
	}
	b := <-batches
	if len(b.Items) != 1 || b.Items[0].Topic != "t/1" || string(b.Items[0].Payload) != "1" {
		t.Fatalf("batch %+v, want t/1 alone", b.Items)
	}
	if len(batches) != 0 {
		t.Fatal("a batch after the malformed header")
	}
}

// TestQoS0ReaderLeavesPacketsBeforeConnackToPaho checks that a QoS 0
// PUBLISH that comes before the CONNACK goes to paho (which refuses such a
// connection), not to the pipeline, and so does one after a CONNACK that
// refuses the connection.
func TestQoS0ReaderLeavesPacketsBeforeConnackToPaho(t *testing.T) {
	publish := wirePublish("t/0", 0, false, []byte("0"))
	for name, stream := range map[string][]byte{
		"publish before CONNACK": slices.Concat(publish, mqttPacket(0x20, []byte{0, 0})),
		"refusing CONNACK":       slices.Concat(mqttPacket(0x20, []byte{0, 5}), publish),
	} {
		bc, broker, batches := qos0Pipe(t, 100)
		go func() {
			broker.Write(stream)
			broker.Close()
		}()
		got, _ := io.ReadAll(bc)
		if !bytes.Equal(got, stream) {
			t.Fatalf("%s: paho read %q, want %q", name, got, stream)
		}
		if len(batches) != 0 {
			t.Fatalf("%s: a message went to the pipeline", name)
		}
	}
}

// FuzzQoS0Reader feeds arbitrary streams, cut at arbitrary points, and
// checks the reader against a plain walk of the packets: it never panics,
// delivers exactly the well-formed QoS 0 PUBLISH packets before the first
// malformed header (in order), and paho reads every other byte.
func FuzzQoS0Reader(f *testing.F) {
	f.Add(slices.Concat(mqttPacket(0x20, []byte{0, 0}), wirePublish("a", 0, false, []byte("x")), wirePublish("b", 1, false, []byte("y"))), uint8(3))
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0x30, 0x05, 0x00, 0x09, 'a'}, uint8(1))
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0x31, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(2))
	f.Add(slices.Concat(mqttPacket(0x20, []byte{0, 0}), wirePublish("big", 0, false, bytes.Repeat([]byte("x"), 33<<10))), uint8(15))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		wantItems, wantPaho, tail := walkPackets(stream)
		bc, broker, batches := qos0Pipe(t, len(stream)/2+1)
		go func() {
			step := int(cut%16) + 1
			for i := 0; i < len(stream); i += step {
				if _, err := broker.Write(stream[i:min(i+step, len(stream))]); err != nil {
					return
				}
			}
			broker.Close()
		}()
		gotPaho, _ := io.ReadAll(bc)
		close(batches)
		var got []Item
		for b := range batches {
			got = append(got, b.Items...)
		}
		// Of a packet cut off by the end of the stream paho may read
		// some bytes or none: the connection fails either way.
		if !bytes.HasPrefix(gotPaho, wantPaho) || !bytes.HasPrefix(tail, gotPaho[len(wantPaho):]) {
			t.Fatalf("paho read %q, want %q and a part of %q", gotPaho, wantPaho, tail)
		}
		if len(got) != len(wantItems) {
			t.Fatalf("%d QoS 0 messages, want %d", len(got), len(wantItems))
		}
		for i := range got {
			if got[i].Topic != wantItems[i].Topic || !bytes.Equal(got[i].Payload, wantItems[i].Payload) {
				t.Fatalf("message %d: %q, want %q", i, got[i], wantItems[i])
			}
		}
	})
}

// walkPackets is the reference for FuzzQoS0Reader: the QoS 0 messages the
// reader should deliver, the bytes paho should read and a packet cut off by
// the end of the stream. A stream that does not begin with a CONNACK
// accepting the connection is paho's, whole.
func walkPackets(s []byte) (items []Item, paho, tail []byte) {
	if len(s) < 4 || s[0] != 0x20 || s[1] != 2 || s[3] != 0 {
		return nil, s, nil
	}
	for i := 0; i < len(s); {
		n, shift, j := 0, 0, i+1
		for ; j < len(s) && j-i <= 4; j++ {
			n |= int(s[j]&0x7f) << shift
			shift += 7
			if s[j]&0x80 == 0 {
				break
			}
		}
		if j-i > 4 {
			return items, append(paho, s[i:]...), nil // malformed: paho reads the rest
		}
		if j >= len(s) || j+1+n > len(s) {
			return items, paho, s[i:]
		}
		end := j + 1 + n
		body := s[j+1 : end]
		if s[i]&0xf6 == 0x30 && len(body) >= 2 && 2+(int(body[0])<<8|int(body[1])) <= len(body) {
			t := 2 + (int(body[0])<<8 | int(body[1]))
			items = append(items, Item{string(body[2:t]), body[t:]})
		} else {
			paho = append(paho, s[i:end]...)
		}
		i = end
	}
	return items, paho, nil
}

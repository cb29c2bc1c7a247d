package ingest

import (
	"slices"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

func publishPacket(qos byte, id uint16) *packets.PublishPacket {
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.Qos, p.MessageID, p.TopicName = qos, id, "t/x"
	return p
}

// TestSessionStoreDropsReceivedPublishesOnly: received PUBLISH packets are
// not kept; a received PUBREL and outbound packets are, and a PUBLISH
// received under the id of a held PUBREL replaces it as paho's store does.
func TestSessionStoreDropsReceivedPublishesOnly(t *testing.T) {
	s := newSessionStore()
	s.Open()
	defer s.Close()
	keys := func() []string { k := s.All(); slices.Sort(k); return k }

	s.Put("i.1", publishPacket(1, 1))
	s.Put("i.2", publishPacket(2, 2))
	if k := keys(); len(k) != 0 {
		t.Fatalf("after two received publishes the store holds %v", k)
	}
	s.Del("i.1") // the PUBACK of 1
	if n := s.inbound.Load(); n != 0 {
		t.Fatalf("inbound count %d, want 0", n)
	}

	rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
	rel.MessageID = 2
	s.Put("i.2", rel)
	s.Put("i.2", rel) // the broker resent it: still one entry
	s.Put("o.9", publishPacket(1, 9))
	if k := keys(); !slices.Equal(k, []string{"i.2", "o.9"}) {
		t.Fatalf("store holds %v, want [i.2 o.9]", k)
	}
	if n := s.inbound.Load(); n != 1 {
		t.Fatalf("inbound count %d, want 1", n)
	}
	if _, ok := s.Get("i.2").(*packets.PubrelPacket); !ok {
		t.Fatalf("i.2 holds %T, want the PUBREL", s.Get("i.2"))
	}

	s.Del("i.3") // an id that holds nothing
	s.Del("i.2") // the PUBCOMP of 2
	if k := keys(); !slices.Equal(k, []string{"o.9"}) {
		t.Fatalf("store holds %v, want [o.9]", k)
	}
	if n := s.inbound.Load(); n != 0 {
		t.Fatalf("inbound count %d, want 0", n)
	}

	s.Put("i.4", rel)
	s.Put("i.4", publishPacket(2, 4)) // a new flow under the same id
	if k := keys(); !slices.Equal(k, []string{"o.9"}) {
		t.Fatalf("store holds %v, want [o.9]", k)
	}
	s.Put("i.5", rel)
	s.Reset()
	if k, n := keys(), s.inbound.Load(); len(k) != 0 || n != 0 {
		t.Fatalf("after Reset: %v, inbound count %d", k, n)
	}
}

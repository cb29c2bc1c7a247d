package ingest

import (
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// sessionStore is paho's store for an MQTT source: its memory store, less
// the received QoS 1/2 PUBLISH packets. paho puts every one of those under
// "i.<id>" and deletes it when the ack goes out (a lock, a map insert and
// a delete per message, about 6% of the agent's CPU at QoS 1), but never
// reads them back: on reconnect it discards them (and would reserve their
// ids for its own publishes); the broker redelivers what was not acked.
// Received PUBRELs (QoS 2) are kept: paho answers them again after a
// reconnect.
type sessionStore struct {
	mqtt.Store
	mu      sync.Mutex   // orders the Get and Put or Del of an "i." entry
	inbound atomic.Int64 // entries under "i." held by the memory store
}

func newSessionStore() *sessionStore { return &sessionStore{Store: mqtt.NewMemoryStore()} }

func isInboundKey(key string) bool { return strings.HasPrefix(key, "i.") }

func (s *sessionStore) Put(key string, m packets.ControlPacket) {
	if isInboundKey(key) {
		if _, ok := m.(*packets.PublishPacket); ok {
			// A PUBREL of the same id may be held (a QoS 2 flow the
			// broker restarted): paho's store would replace it.
			s.Del(key)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.Store.Get(key) == nil {
			s.inbound.Add(1)
		}
	}
	s.Store.Put(key, m)
}

func (s *sessionStore) Del(key string) {
	if isInboundKey(key) {
		if s.inbound.Load() == 0 {
			return // the common case: nothing of ours to delete
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.Store.Get(key) != nil {
			s.inbound.Add(-1)
		}
	}
	s.Store.Del(key)
}

func (s *sessionStore) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Store.Reset()
	s.inbound.Store(0)
}

package api

import (
	"sync"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// streamQueue is how many events a slow stream client may fall behind
// before events are dropped for it (and it is told how many).
const streamQueue = 1024

// hub fans committed outputs out to the stream's subscribers. publish never
// blocks: a subscriber whose queue is full misses events and is told so.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	rules   map[string]bool // nil: every rule
	events  chan []byte     // envelopes; closed when the hub closes
	mu      sync.Mutex
	dropped uint64 // events missed since the last taken
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

// subscribe returns a subscriber to the given rules (all when empty), or nil
// when the hub is closed.
func (h *hub) subscribe(rules []string) *subscriber {
	s := &subscriber{events: make(chan []byte, streamQueue)}
	if len(rules) > 0 {
		s.rules = map[string]bool{}
		for _, r := range rules {
			s.rules[r] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.events)
	}
}

// publish sends the envelope of each entry to the subscribers that want its
// rule. Envelopes are built once per entry, only when someone wants it.
func (h *hub) publish(entries []buffer.Entry, env uplink.Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	for i := range entries {
		e := &entries[i]
		var b []byte
		for s := range h.subs {
			if s.rules != nil && !s.rules[e.Rule] {
				continue
			}
			if b == nil {
				b = env.Append(nil, e)
			}
			select {
			case s.events <- b:
			default:
				s.mu.Lock()
				s.dropped++
				s.mu.Unlock()
			}
		}
	}
}

// takeDropped returns and resets the count of events s missed.
func (s *subscriber) takeDropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

// close ends every subscription; later subscribes return nil.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.events)
	}
}

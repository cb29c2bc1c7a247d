package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Envelope is the upstream JSON envelope of DESIGN.md.
type Envelope struct {
	Gateway string `json:"gateway"`
	Rule    string `json:"rule"`
	Seq     uint64 `json:"seq"`
	TS      string `json:"ts"`
	Window  *struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"window"`
	Key    map[string]any     `json:"key"`
	Values map[string]float64 `json:"values"`
	Tags   map[string]string  `json:"tags"`
}

// Collector reads every message of a JetStream stream in order, as it arrives.
type Collector struct {
	mu      sync.Mutex
	cond    *sync.Cond
	envs    []Envelope
	msgIDs  []string
	arrived []time.Time // when each envelope reached the consumer
	badJSON int
	cc      jetstream.ConsumeContext
}

// CreateStream creates a stream over subjects with a dedup window that
// allows fast batch publishing, as the uplink uses it.
func CreateStream(ctx context.Context, nc *nats.Conn, name string, subjects ...string) (jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects, Duplicates: 2 * time.Minute, AllowBatchPublish: true})
}

// Collect starts an ordered consumer on the stream.
func Collect(ctx context.Context, s jetstream.Stream) (*Collector, error) {
	c := &Collector{}
	c.cond = sync.NewCond(&c.mu)
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		var e Envelope
		err := json.Unmarshal(m.Data(), &e)
		c.mu.Lock()
		if err != nil {
			c.badJSON++
		} else {
			c.envs = append(c.envs, e)
			c.arrived = append(c.arrived, now)
			c.msgIDs = append(c.msgIDs, m.Headers().Get("Nats-Msg-Id"))
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Stop ends the consumer.
func (c *Collector) Stop() { c.cc.Stop() }

// Snapshot returns what was collected so far.
func (c *Collector) Snapshot() (envs []Envelope, msgIDs []string, badJSON int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Envelope(nil), c.envs...), append([]string(nil), c.msgIDs...), c.badJSON
}

// Arrivals returns the envelopes collected so far with when each reached
// the consumer, for latency figures.
func (c *Collector) Arrivals() ([]Envelope, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Envelope(nil), c.envs...), append([]time.Time(nil), c.arrived...)
}

// Len returns how many envelopes were collected so far.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envs)
}

// SumValue adds up one value over every collected envelope.
func (c *Collector) SumValue(name string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sumValue(c.envs, name)
}

func sumValue(envs []Envelope, name string) float64 {
	var s float64
	for _, e := range envs {
		s += e.Values[name]
	}
	return s
}

// WaitSum blocks until the sum of value name over the envelopes reaches want,
// or timeout. It returns the sum it saw last.
func (c *Collector) WaitSum(name string, want float64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer t.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		got := sumValue(c.envs, name)
		if got >= want {
			return got, nil
		}
		if !time.Now().Before(deadline) {
			return got, fmt.Errorf("sum of %s reached %v, want %v within %s", name, got, want, timeout)
		}
		c.cond.Wait()
	}
}

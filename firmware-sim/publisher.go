package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const (
	// MaxInflight bounds unacknowledged QoS 1 messages per connection (below
	// mochi's default receive maximum of 1024). Publish waits for a slot.
	MaxInflight = 1000
	// AckTimeout is how long a QoS 1 message may wait for its PUBACK before it
	// counts as an error. paho with a clean session drops in-flight messages
	// on reconnect without completing their tokens; this bounds that case.
	AckTimeout     = 10 * time.Second
	connectTimeout = 10 * time.Second
	writeTimeout   = 5 * time.Second
	slabSize       = 64 << 10
)

// ErrNotConnected is counted for a message offered while its connection is
// down: paho would drop it silently (QoS 0 at once, QoS 1 on reconnect).
var ErrNotConnected = errors.New("connection is down, message dropped")

// ErrLostOnReconnect is counted for a QoS 1 message still unacknowledged
// when its connection was lost: with a clean session paho drops what was in
// flight on reconnect and never completes its token, so waiting for
// AckTimeout would only stall the send loop.
var ErrLostOnReconnect = errors.New("in flight when the connection was lost")

// ErrAckTimeout is counted for a QoS 1 message not acknowledged within
// AckTimeout, or not by the end of the shutdown grace period.
var ErrAckTimeout = errors.New("no PUBACK in time")

type pendingAck struct {
	tok      mqtt.Token
	deadline time.Time
	lost     <-chan struct{} // closed when the connection it was sent on is lost
	dev      int             // the device and message time, for onAck
	ts       int64
}

type conn struct {
	id      string
	client  mqtt.Client
	slots   chan struct{}   // QoS 1: one per message in flight
	pending chan pendingAck // QoS 1: tokens in publish order, for the acker
	ackDone chan struct{}   // QoS 1: closed when the acker returns
	last    mqtt.Token      // the last message handed to paho
	// down is set by the send loop when a storm takes the connection down
	// and cleared by the flap goroutine once it is connected again.
	down atomic.Bool

	mu   sync.Mutex
	lost chan struct{} // closed and replaced each time the connection is lost
}

// connectionLost is called when the connection drops: what is in flight
// can no longer be acknowledged (clean session).
func (c *conn) connectionLost() {
	c.mu.Lock()
	close(c.lost)
	c.lost = make(chan struct{})
	c.mu.Unlock()
}

// epoch returns a channel that is closed when the connection is next lost.
func (c *conn) epoch() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// publisher spreads messages over one or more MQTT connections and counts
// what happened to them. Connection 0 also subscribes to device commands
// (again after each reconnect) and carries the replies.
//
// Publish, Flap, Reply and Close are called from a single goroutine (the
// send loop); one acker goroutine per connection settles QoS 1 tokens, and
// one goroutine per Flap takes its connection down and up again. Sent, Acked,
// Errors and the other counters may be read from any goroutine at any time.
type publisher struct {
	counts
	broker string
	qos    byte
	conns  []*conn
	abort  chan struct{} // closed when the shutdown grace period is over
	logf   func(format string, args ...any)

	slab []byte // payload copies are carved from here; paho keeps the slice

	// onAck, if set, is called with the device and message time of every
	// QoS 1 message the broker acknowledged, from the acker goroutines.
	onAck func(dev int, ts int64)

	cmdFilter  string
	subscribed chan struct{} // closed when the first command subscription is in place
	subOnce    sync.Once
	stopFlaps  chan struct{}
	flaps      sync.WaitGroup

	disconnects, reconnects, replies atomic.Uint64
}

// newPublisher prepares n connections to broker. The client IDs are clientID
// when n is 1, clientID-0 .. clientID-(n-1) otherwise. logf receives
// connection events; it must be safe for concurrent use. If cmdFilter is
// not empty, connection 0 subscribes to it and calls onCmd, from paho's
// goroutine, for each message that arrives.
func newPublisher(broker, clientID string, n int, qos byte, nagle bool, logf func(string, ...any),
	cmdFilter string, onCmd func(topic string, payload []byte)) *publisher {
	p := &publisher{broker: broker, qos: qos, abort: make(chan struct{}), logf: logf,
		cmdFilter: cmdFilter, subscribed: make(chan struct{}), stopFlaps: make(chan struct{})}
	if cmdFilter == "" {
		close(p.subscribed)
	}
	for i := range n {
		id := connID(clientID, n, i)
		c := &conn{id: id, lost: make(chan struct{})}
		opts := mqtt.NewClientOptions().
			AddBroker(broker).
			SetClientID(id).
			SetCleanSession(true).
			SetAutoReconnect(true).
			SetConnectRetry(true).
			SetConnectRetryInterval(time.Second).
			SetMaxReconnectInterval(5 * time.Second).
			SetConnectTimeout(5 * time.Second).
			SetWriteTimeout(writeTimeout).
			SetKeepAlive(30 * time.Second).
			SetOrderMatters(false).
			SetStore(noStore{}).
			SetConnectionLostHandler(func(_ mqtt.Client, err error) {
				c.connectionLost()
				logf("connection %s to %s lost: %v", id, broker, err)
			}).
			SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
				logf("connection %s reconnecting to %s", id, broker)
			})
		if i == 0 && cmdFilter != "" {
			// With a clean session the subscription is made again on
			// every connect.
			opts.SetOnConnectHandler(func(cl mqtt.Client) {
				tok := cl.Subscribe(cmdFilter, 1, func(_ mqtt.Client, m mqtt.Message) {
					onCmd(m.Topic(), m.Payload())
				})
				go func() {
					// A refused subscription costs the commands, not the run.
					ok := tok.WaitTimeout(connectTimeout)
					switch {
					case !ok:
						logf("subscribe to commands %s: no SUBACK after %s; devices will not answer commands", cmdFilter, connectTimeout)
					case tok.Error() != nil:
						logf("subscribe to commands %s: %v; devices will not answer commands", cmdFilter, tok.Error())
					case tok.(*mqtt.SubscribeToken).Result()[cmdFilter] >= 0x80:
						logf("subscribe to commands %s: refused by the broker; devices will not answer commands", cmdFilter)
					}
					p.subOnce.Do(func() { close(p.subscribed) })
				}()
			})
		}
		if isPlainTCP(broker) {
			opts.SetCustomOpenConnectionFn(func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
				return dialBuffered(u, o, nagle)
			})
		}
		c.client = mqtt.NewClient(opts)
		if qos > 0 {
			c.slots = make(chan struct{}, MaxInflight)
			c.pending = make(chan pendingAck, MaxInflight)
			c.ackDone = make(chan struct{})
		}
		p.conns = append(p.conns, c)
	}
	return p
}

// Connect connects every connection and returns when all are up. It returns
// an error, after disconnecting, if one fails, if not all are up within
// connectTimeout or if ctx is done first.
func (p *publisher) Connect(ctx context.Context) error {
	toks := make([]mqtt.Token, len(p.conns))
	for i, c := range p.conns {
		toks[i] = c.client.Connect()
	}
	timer := time.NewTimer(connectTimeout)
	defer timer.Stop()
	for i, tok := range toks {
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-timer.C:
			err = fmt.Errorf("not connected after %s", connectTimeout)
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			for _, c := range p.conns {
				c.client.Disconnect(0)
			}
			return fmt.Errorf("connect to %s as %s: %w", p.broker, p.conns[i].id, err)
		}
	}
	select {
	case <-p.subscribed: // or given up on
	case <-ctx.Done():
		return fmt.Errorf("subscribe to commands %s on %s: %w", p.cmdFilter, p.broker, ctx.Err())
	}
	if p.qos > 0 {
		for _, c := range p.conns {
			go p.ack(c)
		}
	}
	return nil
}

// Publish hands one message to connection i. It copies payload; dev and ts
// (the device and message time) are only passed to onAck. A failure to
// publish is counted and returned; the only error that is not counted is
// ctx's, returned when ctx is done while waiting for a QoS 1 slot. A message
// offered while the connection is down (the broker is gone and paho is
// reconnecting) fails at once at either QoS, as it would be dropped on
// reconnect: with a clean session paho clears what it stored meanwhile.
func (p *publisher) Publish(ctx context.Context, i int, topic string, payload []byte, dev int, ts int64) error {
	c := p.conns[i]
	if !c.client.IsConnectionOpen() {
		return p.fail(ErrNotConnected)
	}
	if p.qos == 0 {
		tok := c.client.Publish(topic, 0, false, p.copy(payload))
		select {
		case <-tok.Done(): // usually not yet: QoS 0 completes once written
			if err := tok.Error(); err != nil {
				return p.fail(err)
			}
		default:
		}
		c.last = tok
		p.sent.Add(1)
		return nil
	}

	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	lost := c.epoch() // taken before the publish, which a loss after it may drop
	tok := c.client.Publish(topic, p.qos, false, p.copy(payload))
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil { // not connected, no message IDs, write timeout
			<-c.slots
			return p.fail(err)
		}
	default:
	}
	p.sent.Add(1)
	c.last = tok
	c.pending <- pendingAck{tok: tok, deadline: time.Now().Add(AckTimeout), lost: lost, dev: dev, ts: ts}
	return nil
}

// Down reports whether connection i is down because of Flap: the send loop
// does not publish on it then.
func (p *publisher) Down(i int) bool { return p.conns[i].down.Load() }

// Flap takes connection i down for about down, as a device losing its
// network does: it is marked down at once (Down reports true), and in the
// background, once its last message is settled, disconnected, and after down
// connected again and marked up. It reports false if the connection was
// down already.
func (p *publisher) Flap(i int, down time.Duration) bool {
	c := p.conns[i]
	if c.down.Load() {
		return false
	}
	c.down.Store(true)
	last := c.last
	p.flaps.Add(1)
	go func() {
		defer p.flaps.Done()
		timer := time.NewTimer(AckTimeout)
		defer timer.Stop()
		if last != nil {
			select {
			case <-last.Done():
			case <-timer.C:
			case <-p.stopFlaps:
				return
			}
		}
		c.client.Disconnect(0)
		p.disconnects.Add(1)
		timer.Reset(down)
		select {
		case <-timer.C:
		case <-p.stopFlaps:
			return
		}
		tok := c.client.Connect()
		select {
		case <-tok.Done():
		case <-p.stopFlaps:
			return
		}
		if err := tok.Error(); err != nil {
			p.logf("connection %s: reconnect after storm: %v", c.id, err)
			return
		}
		p.reconnects.Add(1)
		c.down.Store(false)
	}()
	return true
}

// Reply publishes a command reply at QoS 1 on connection 0, outside the
// message counts. It does not wait for the acknowledgement.
func (p *publisher) Reply(topic string, payload []byte) {
	p.conns[0].client.Publish(topic, 1, false, payload)
	p.replies.Add(1)
}

// ack settles the QoS 1 tokens of c in publish order until c.pending is
// closed, giving each until its deadline, until p.abort or until the
// connection it was sent on is lost.
func (p *publisher) ack(c *conn) {
	defer close(c.ackDone)
	var timer *time.Timer
	for pa := range c.pending {
		select {
		case <-pa.tok.Done():
		default:
			d := time.Until(pa.deadline)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-pa.tok.Done():
			case <-timer.C:
			case <-p.abort:
			case <-pa.lost:
			}
		}
		select {
		case <-pa.tok.Done():
			if err := pa.tok.Error(); err != nil {
				p.fail(err)
			} else {
				p.acked.Add(1)
				if p.onAck != nil {
					p.onAck(pa.dev, pa.ts)
				}
			}
		case <-pa.lost:
			p.fail(ErrLostOnReconnect)
		default:
			p.fail(ErrAckTimeout)
		}
		<-c.slots
	}
}

// Close waits up to grace for outstanding QoS 1 acknowledgements (or for
// the last QoS 0 message to be written), counts the rest as errors and
// disconnects. Publish must not be called after Close.
func (p *publisher) Close(grace time.Duration) {
	close(p.stopFlaps)
	p.flaps.Wait()
	stop := time.AfterFunc(grace, func() { close(p.abort) })
	for _, c := range p.conns {
		if p.qos > 0 {
			close(c.pending)
			<-c.ackDone
		} else if c.last != nil {
			select {
			case <-c.last.Done():
			case <-p.abort:
			}
		}
	}
	stop.Stop()
	for _, c := range p.conns {
		c.client.Disconnect(250)
	}
}

// Flush does nothing: paho writes each message as it comes.
func (p *publisher) Flush() {}

func (p *publisher) ConnID(i int) string          { return p.conns[i].id }
func (p *publisher) Disconnects() uint64          { return p.disconnects.Load() }
func (p *publisher) Reconnects() uint64           { return p.reconnects.Load() }
func (p *publisher) SetOnAck(fn func(int, int64)) { p.onAck = fn }

// connID returns the client ID of connection i of n.
func connID(clientID string, n, i int) string {
	if n == 1 {
		return clientID
	}
	return fmt.Sprintf("%s-%d", clientID, i)
}

// sender is what the send loop publishes through: a publisher (paho) or a
// rawPublisher (--raw).
type sender interface {
	Connect(ctx context.Context) error
	Publish(ctx context.Context, i int, topic string, payload []byte, dev int, ts int64) error
	// Flush writes what is buffered; the send loop calls it before it waits.
	Flush()
	Down(i int) bool
	Flap(i int, down time.Duration) bool
	Reply(topic string, payload []byte)
	Close(grace time.Duration)
	ConnID(i int) string
	SetOnAck(fn func(dev int, ts int64))
	Sent() uint64
	Acked() uint64
	Errors() uint64
	FirstError() string
	Disconnects() uint64
	Reconnects() uint64
}

// counts are a publisher's message counters, safe to read from any
// goroutine.
type counts struct {
	sent, acked, errs atomic.Uint64
	firstErr          sync.Once
	firstErrMsg       atomic.Pointer[string]
}

// Sent returns the number of messages handed over without error.
func (c *counts) Sent() uint64 { return c.sent.Load() }

// Acked returns the number of QoS 1 messages the broker acknowledged.
func (c *counts) Acked() uint64 { return c.acked.Load() }

// Errors returns the number of messages that failed to publish or, at QoS 1,
// were not acknowledged.
func (c *counts) Errors() uint64 { return c.errs.Load() }

// FirstError returns the first error counted, or "".
func (c *counts) FirstError() string {
	if s := c.firstErrMsg.Load(); s != nil {
		return *s
	}
	return ""
}

func (c *counts) fail(err error) error {
	c.errs.Add(1)
	c.firstErr.Do(func() {
		s := err.Error()
		c.firstErrMsg.Store(&s)
	})
	return err
}

// copy returns a copy of b carved from a shared slab, so that the send loop
// can reuse its buffer while paho still holds the message.
func (p *publisher) copy(b []byte) []byte {
	if len(p.slab) < len(b) {
		p.slab = make([]byte, max(slabSize, len(b)))
	}
	out := p.slab[:len(b):len(b)]
	copy(out, b)
	p.slab = p.slab[len(b):]
	return out
}

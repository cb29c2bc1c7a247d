package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MQTTOptions configure an MQTT source.
type MQTTOptions struct {
	Input        int // index stamped on every Message
	URL          string
	ClientID     string
	Topics       []string
	QoS          byte
	Username     string
	Password     string
	KeepAlive    time.Duration
	ReadCoalesce time.Duration
	// QuickAck sets TCP_QUICKACK before each coalescing wait (see quickAcker).
	QuickAck bool
	// MaxAckDelay bounds how long, with reads coalesced, the broker's data
	// goes without a TCP ACK (see brokerConn.maxAckDelay); 0: the kernel's
	// delayed ACK (up to 40 ms).
	MaxAckDelay time.Duration
	MaxPayload  int
	// MaxInflight caps the QoS 1/2 messages handed out and not yet acked
	// (0: no cap). At the cap the source takes no new message until an ack
	// frees a slot: paho's router blocks, the socket is not read, and the
	// broker holds the rest (it stops sending at its own
	// max_inflight_messages). QoS 0 messages take no slot.
	MaxInflight int
	// TLS, when not nil, is used for ssl://, tls:// and mqtts:// URLs (and
	// for tcp:// too, when set). The buffered, coalescing reader wraps the
	// TLS connection, so TLS gets the same batching as TCP.
	TLS    *tls.Config
	Logger *slog.Logger
}

// MQTT subscribes to topic filters with a persistent session
// (CleanSession=false) and auto-ack disabled: a QoS 1/2 message is acked only
// when the pipeline calls its Acker, after the commit that covers it. It
// reconnects forever with capped backoff and resubscribes.
//
// paho calls the message handler from its router goroutine; the handler blocks
// on the pipeline's channel, and on a free in-flight slot when MaxInflight is
// set, which is the source's backpressure.
type MQTT struct {
	opts   MQTTOptions
	client mqtt.Client
	log    *slog.Logger
	out    chan<- Message
	ctx    context.Context

	// SessionPresent is called with the session-present flag of each CONNACK,
	// before any message of that connection is handed out.
	SessionPresent func(present bool)

	subscribed     chan struct{} // closed at the first SUBACK
	subscribedOnce sync.Once

	// slots holds the free in-flight slots (nil: no cap). A slot is the
	// Acker of one message, made the first time the slots in use are all
	// there is (made counts them) and reused from then on: the cap costs
	// no allocation per message, and an idle input none of the cap's
	// memory (10,000 slots are ~400 KB).
	slots   chan *inflight
	made    atomic.Int64
	blocked atomic.Bool // the handler waits for a slot

	Received  atomic.Uint64
	Oversized atomic.Uint64
	// AcksSent counts the PUBACKs, PUBRECs and PUBCOMPs written to the
	// broker's socket (acks are written in batches: see brokerConn).
	AcksSent  atomic.Uint64
	Connects  atomic.Uint64
	connected atomic.Bool
}

// NewMQTT returns a source; Start connects it.
func NewMQTT(opts MQTTOptions) *MQTT {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &MQTT{opts: opts, log: log.With("input", opts.ClientID), subscribed: make(chan struct{})}
	if opts.MaxInflight > 0 {
		s.slots = make(chan *inflight, opts.MaxInflight)
	}
	return s
}

// inflight is one slot of the in-flight cap, lent to one message at a time.
type inflight struct {
	m    mqtt.Message
	free chan<- *inflight
}

// Ack sends the message's ack, then frees the slot: the next message is
// taken only after the broker was told about this one, so the count the
// broker sees unacked never passes the cap either.
func (a *inflight) Ack() {
	m := a.m
	a.m = nil
	m.Ack()
	a.free <- a
}

// Inflight returns how many QoS 1/2 messages are handed out and not acked
// (0 without a cap).
func (s *MQTT) Inflight() int {
	if s.slots == nil {
		return 0
	}
	return int(s.made.Load()) - len(s.slots)
}

// newSlot makes a slot if fewer than the cap exist, or returns nil.
func (s *MQTT) newSlot() *inflight {
	for n := s.made.Load(); n < int64(cap(s.slots)); n = s.made.Load() {
		if s.made.CompareAndSwap(n, n+1) {
			return &inflight{free: s.slots}
		}
	}
	return nil
}

// Blocked reports whether the source waits for an ack to free a slot.
func (s *MQTT) Blocked() bool { return s.blocked.Load() }

// Subscribed is closed once the first subscription was acknowledged: from
// then on the broker keeps messages for this session.
func (s *MQTT) Subscribed() <-chan struct{} { return s.subscribed }

// Connected reports whether the client is connected now.
func (s *MQTT) Connected() bool { return s.connected.Load() }

// Start connects and subscribes, sending messages to out until ctx ends. It
// returns once the first connection attempt finished; if the broker is down
// it keeps trying in the background and returns nil.
func (s *MQTT) Start(ctx context.Context, out chan<- Message) error {
	s.out, s.ctx = out, ctx
	o := mqtt.NewClientOptions().
		AddBroker(s.opts.URL).
		SetClientID(s.opts.ClientID).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(30 * time.Second).
		SetKeepAlive(s.opts.KeepAlive).
		SetResumeSubs(false).
		SetCustomOpenConnectionFn(s.dial).
		SetStore(newSessionStore()).
		// Every message goes to the default handler, subscriptions register
		// none: paho's router then matches no topic filter per message
		// (two strings.Split each), and messages a persistent session
		// delivers before the subscribe call have a handler too.
		SetDefaultPublishHandler(s.handle).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			s.connected.Store(false)
			s.log.Warn("mqtt connection lost", "err", err)
		})
	if s.opts.Username != "" {
		o.SetUsername(s.opts.Username)
		o.SetPassword(s.opts.Password)
	}
	s.client = mqtt.NewClient(o)
	t := s.client.Connect()
	select {
	case <-t.Done():
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("mqtt %s: connect: %w", s.opts.URL, err)
	}
	return nil
}

// dial opens the TCP connection and wraps it for buffered, coalesced reads.
func (s *MQTT) dial(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := net.Dialer{Timeout: o.ConnectTimeout}
	secure := u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || s.opts.TLS != nil
	host := u.Host
	if u.Port() == "" {
		port := "1883"
		if secure {
			port = "8883"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	if secure {
		cfg := s.opts.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		// One timeout for the dial and the handshake, as tls.DialWithDialer
		// has; the TCP connection under TLS reads with raw system calls.
		ctx := context.Background()
		if o.ConnectTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.ConnectTimeout)
			defer cancel()
		}
		c, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(rawReads(c), cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return newBrokerConn(tc, s.connOptions(), s.SessionPresent, &s.AcksSent), nil
	}
	c, err := d.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	return newBrokerConn(rawReads(c), s.connOptions(), s.SessionPresent, &s.AcksSent), nil
}

// TLSConfig builds a client TLS config from PEM files: a CA to verify the
// broker (empty: the system's roots) and an optional client certificate.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s *MQTT) connOptions() connOptions {
	return connOptions{coalesce: s.opts.ReadCoalesce, quickAck: s.opts.QuickAck, maxAckDelay: s.opts.MaxAckDelay, qos0: s.deliverQoS0}
}

// deliverQoS0 sends the QoS 0 messages of a socket read, which the
// connection read itself (see qos0.go), to the pipeline in one send.
func (s *MQTT) deliverQoS0(b *Batch) {
	s.Received.Add(uint64(len(b.Items)))
	select {
	case s.out <- Message{Input: s.opts.Input, Batch: b}:
	case <-s.ctx.Done():
	}
}

// onConnect subscribes on every (re)connect: with a persistent session the
// broker keeps subscriptions, but a broker that lost its state does not.
func (s *MQTT) onConnect(c mqtt.Client) {
	s.connected.Store(true)
	s.Connects.Add(1)
	filters := make(map[string]byte, len(s.opts.Topics))
	for _, t := range s.opts.Topics {
		filters[t] = s.opts.QoS
	}
	t := c.SubscribeMultiple(filters, nil)
	go func() {
		if t.WaitTimeout(10*time.Second) && t.Error() == nil {
			s.log.Info("mqtt subscribed", "url", s.opts.URL, "topics", s.opts.Topics)
			s.subscribedOnce.Do(func() { close(s.subscribed) })
			return
		}
		err := t.Error()
		if err == nil {
			err = errors.New("no SUBACK within 10s")
		}
		s.log.Error("mqtt subscribe failed; reconnecting", "err", err)
		c.Disconnect(0)
	}()
}

func (s *MQTT) handle(_ mqtt.Client, m mqtt.Message) {
	s.Received.Add(1)
	msg := Message{
		Input:    s.opts.Input,
		Topic:    m.Topic(),
		Payload:  m.Payload(),
		Received: time.Now(),
		PacketID: m.MessageID(),
		Dup:      m.Duplicate(),
	}
	if m.Qos() > 0 {
		msg.Acker = m
		if s.slots != nil {
			var slot *inflight
			select {
			case slot = <-s.slots:
			default:
				slot = s.newSlot()
			}
			if slot == nil {
				s.blocked.Store(true)
				select {
				case slot = <-s.slots:
					s.blocked.Store(false)
				case <-s.ctx.Done():
					s.blocked.Store(false)
					return // not acked: redelivered to the next session
				}
			}
			slot.m = m
			msg.Acker = slot
		}
	}
	select {
	case s.out <- msg:
	case <-s.ctx.Done():
		// Not acked: the broker redelivers it to the next session. Its
		// slot is free again.
		if a, ok := msg.Acker.(*inflight); ok {
			a.m = nil
			a.free <- a
		}
	}
}

// Close disconnects. Call it after the pipeline stopped, so that the acks of
// its last commit are sent.
func (s *MQTT) Close() {
	if s.client != nil {
		s.client.Disconnect(250)
	}
	s.connected.Store(false)
}

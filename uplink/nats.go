package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/buffer"
)

// Defaults of the NATS uplink.
const (
	DefaultNATSSubject      = "sluice.{gateway}.{rule}"
	DefaultNATSMaxInFlight  = 256
	DefaultNATSAckTimeout   = 5 * time.Second
	natsCoverageTTL         = time.Minute // how long a subject's stream lookup is trusted
	natsMaxRoutes           = 4096        // cached subjects before the cache is reset
	natsReconnectMin        = 250 * time.Millisecond
	natsReconnectMax        = 10 * time.Second
	natsPingInterval        = 20 * time.Second
	natsMaxPingsOutstanding = 3
)

// ErrNotConnected is wrapped by the error of a delivery attempted while the
// client is not connected to a server (it is reconnecting).
var ErrNotConnected = errors.New("not connected")

// ErrNoGateway is returned by NewNATS when no gateway id was given
// (WithGateway): the envelope and the JetStream message ids need it.
var ErrNoGateway = errors.New("no gateway id")

// NATS is an Uplink that publishes entries to NATS, one message per entry
// with the JSON envelope as body (see Envelope) on the subject expanded from
// its template with the gateway id and the entry's rule.
//
// Durability. Where a JetStream stream covers the subject, an entry counts as
// delivered when the stream acknowledged it (the server stored it per the
// stream's replicas and storage). Each message carries the header
// Nats-Msg-Id: <gateway>-<seq>, so a batch retried after a failure or a crash
// is dropped by the stream as duplicates, within the stream's duplicate
// window (Duplicates, 2 minutes by default: a gateway that may retry after
// longer outages wants a longer window). Where the stream allows fast batch
// publishing, a batch whose entries all go to it is sent as one fast batch
// (see natsbatch.go): the same dedup, one ack for the batch (Duplicates then
// counts nothing: the batch's ack does not say how many were replays). Where
// no stream covers the subject, the entry is published with core NATS and
// counts as delivered once a flush round trip shows the server received it:
// core NATS has no acknowledgement, so an entry that no subscriber was
// listening for is gone. The Nats-Msg-Id header is set there too, for
// consumers that deduplicate.
//
// Which subjects a stream covers is asked of the server (one request per
// subject) and trusted for a minute, or until the connection reconnects or a
// publish to the subject fails; a stream created while subjects are being
// published on core NATS takes them over within that time.
//
// Concurrency. Deliver is called from one goroutine at a time (the forwarder
// that owns the uplink's cursor); Name, Connected and the counters may be read
// from any goroutine. Close is called once, after the last Deliver returned.
//
// Connection. The connection is made by NewNATS, which does not fail when the
// server cannot be reached: the client keeps reconnecting forever, with
// exponential backoff from 250ms to 10s and jitter. While it is disconnected
// Deliver fails at once (no publish is buffered in memory: the buffer on disk
// holds the entries) and the forwarder retries later.
type NATS struct {
	// Published counts entries the upstream accepted: JetStream acks,
	// duplicates included, and core publishes confirmed by a flush.
	Published atomic.Uint64
	// Duplicates counts entries whose JetStream ack said the stream
	// already had the message (a retried entry or pack).
	Duplicates atomic.Uint64
	// Errors counts Deliver calls that returned an error.
	Errors atomic.Uint64
	// FastBatches counts deliveries sent as one fast batch (see
	// natsbatch.go).
	FastBatches atomic.Uint64

	name        string
	gateway     string
	subject     Template
	env         Envelope
	maxInFlight int
	ackTimeout  time.Duration
	log         *slog.Logger

	nc *nats.Conn
	js jetstream.JetStream

	// Deliver's state, touched only by the goroutine calling Deliver.
	pack       *packer               // nil: one message per entry
	routes     map[string]*natsRoute // by rule
	streams    map[string]natsStream // by name
	reconnects uint64                // nc's reconnect count when routes was last trusted
	slab       []byte                // message bodies of the last batch, reused after a clean batch
	scratch    []byte
	pending    []natsPending
	ackTimer   *time.Timer // await's backstop, reused
	fast       *natsFast   // fast batch publishing, once used
	noFast     bool        // WithFastBatch(false)
	careful    bool        // the next delivery goes one message at a time: the one after a failure
}

// natsStream is what the uplink knows of a stream's configuration.
type natsStream struct {
	batched bool // allow_batched
	checked time.Time
	ttl     time.Duration // how long checked is trusted
}

// natsRoute is where the entries of one rule go.
type natsRoute struct {
	subject string
	stream  string // "" when no stream covers the subject: core publish
	batched bool   // the stream allows fast batch publishing
	checked time.Time
}

type natsPending struct {
	fut     jetstream.PubAckFuture
	seq     uint64 // the entry's, or the first of a pack's
	records int    // entries the message holds: 1, or a pack's count
	subject string
}

type natsConfig struct {
	subject     Template
	gateway     string
	maxInFlight int
	ackTimeout  time.Duration
	log         *slog.Logger
	tls         *tls.Config
	auth        []nats.Option
	nkeySeed    string
	natsOpts    []nats.Option
	pack        Pack
	noFast      bool
}

// NATSOption configures NewNATS.
type NATSOption func(*natsConfig)

// WithFastBatch turns fast batch publishing to streams that allow it on
// (the default) or off (see natsbatch.go).
func WithFastBatch(on bool) NATSOption { return func(c *natsConfig) { c.noFast = !on } }

// WithSubject sets the subject template (default "sluice.{gateway}.{rule}").
// NewNATS rejects a template that ParseSubject would reject.
func WithSubject(t Template) NATSOption { return func(c *natsConfig) { c.subject = t } }

// WithGateway sets the gateway id written into every envelope and message id.
// It is required.
func WithGateway(id string) NATSOption { return func(c *natsConfig) { c.gateway = id } }

// WithMaxInFlight bounds the JetStream publishes awaiting their ack (default
// 256). It must be at least 1.
func WithMaxInFlight(n int) NATSOption { return func(c *natsConfig) { c.maxInFlight = n } }

// WithLogger sets the logger for connection events and subject coverage
// changes (default slog.Default()).
func WithLogger(l *slog.Logger) NATSOption { return func(c *natsConfig) { c.log = l } }

// WithAckTimeout sets how long a JetStream publish waits for its ack, and a
// core flush for the server, when the context of Deliver has no earlier
// deadline (default 5s).
func WithAckTimeout(d time.Duration) NATSOption { return func(c *natsConfig) { c.ackTimeout = d } }

// WithNATSTLS connects with TLS (see LoadTLS); a tls:// URL needs it only
// for a private CA or a client certificate.
func WithNATSTLS(cfg *tls.Config) NATSOption { return func(c *natsConfig) { c.tls = cfg } }

// WithUserPassword authenticates with a user name and password.
func WithUserPassword(user, password string) NATSOption {
	return func(c *natsConfig) { c.auth = append(c.auth, nats.UserInfo(user, password)) }
}

// WithToken authenticates with a token.
func WithToken(token string) NATSOption {
	return func(c *natsConfig) { c.auth = append(c.auth, nats.Token(token)) }
}

// WithNKeySeedFile authenticates with the user NKey whose seed is in the
// file; NewNATS reads it and fails if it cannot.
func WithNKeySeedFile(path string) NATSOption { return func(c *natsConfig) { c.nkeySeed = path } }

// WithCredsFile authenticates with a .creds file (user JWT and NKey seed),
// read at every connect.
func WithCredsFile(path string) NATSOption {
	return func(c *natsConfig) { c.auth = append(c.auth, nats.UserCredentials(path)) }
}

// WithNATSOptions adds options of the NATS client (credentials, TLS, ...).
// They are applied after the uplink's own, so they override them (the
// reconnect delay, say).
func WithNATSOptions(opts ...nats.Option) NATSOption {
	return func(c *natsConfig) { c.natsOpts = append(c.natsOpts, opts...) }
}

// NewNATS returns a NATS uplink called name (the name entries are routed
// to) that connects to the server(s) at url, a comma-separated list as
// nats.Connect takes. It returns an error when an option is invalid or the
// URL cannot be used; a server that cannot be reached is not an error (see
// NATS).
func NewNATS(name, url string, opts ...NATSOption) (*NATS, error) {
	cfg := natsConfig{
		maxInFlight: DefaultNATSMaxInFlight,
		ackTimeout:  DefaultNATSAckTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if name == "" {
		return nil, errors.New("nats uplink: empty name")
	}
	if cfg.gateway == "" {
		return nil, fmt.Errorf("nats %s: %w", name, ErrNoGateway)
	}
	if cfg.subject.parts == nil {
		t, err := ParseSubject(DefaultNATSSubject)
		if err != nil {
			panic(err) // a constant
		}
		cfg.subject = t
	}
	if err := cfg.subject.checkSubject(); err != nil {
		return nil, fmt.Errorf("nats %s: subject: %w", name, err)
	}
	if cfg.maxInFlight < 1 {
		return nil, fmt.Errorf("nats %s: max in flight %d, want at least 1", name, cfg.maxInFlight)
	}
	if cfg.ackTimeout <= 0 {
		return nil, fmt.Errorf("nats %s: ack timeout %v, want more than 0", name, cfg.ackTimeout)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	log := cfg.log.With("uplink", name)
	var pk *packer
	if cfg.pack.MaxRecords > 1 {
		var err error
		if pk, err = newPacker(cfg.pack); err != nil {
			return nil, fmt.Errorf("nats %s: pack: %w", name, err)
		}
	}

	nopts := []nats.Option{
		nats.Name("sluice " + cfg.gateway + " " + name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(natsReconnectDelay),
		// Fail publishes at once while disconnected instead of buffering
		// them in memory: the entries are safe in the buffer and the
		// forwarder retries.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOutstanding),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("nats reconnect failed", "err", err)
		}),
	}
	if cfg.tls != nil {
		nopts = append(nopts, nats.Secure(cfg.tls))
	}
	nopts = append(nopts, cfg.auth...)
	if cfg.nkeySeed != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.nkeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats %s: nkey seed: %w", name, err)
		}
		nopts = append(nopts, o)
	}
	nopts = append(nopts, cfg.natsOpts...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: connect %s: %w", name, url, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.maxInFlight),
		jetstream.WithPublishAsyncTimeout(cfg.ackTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: jetstream: %w", name, err)
	}
	return &NATS{
		name:        name,
		gateway:     cfg.gateway,
		subject:     cfg.subject,
		env:         NewEnvelope(cfg.gateway),
		maxInFlight: cfg.maxInFlight,
		ackTimeout:  cfg.ackTimeout,
		log:         log,
		nc:          nc,
		js:          js,
		routes:      make(map[string]*natsRoute),
		streams:     make(map[string]natsStream),
		pack:        pk,
		noFast:      cfg.noFast,
	}, nil
}

// natsReconnectDelay is the delay before the attempt'th reconnect of an
// outage: exponential from natsReconnectMin, capped at natsReconnectMax, and
// drawn uniformly from its upper half so that a fleet does not reconnect in
// step.
func natsReconnectDelay(attempt int) time.Duration {
	d := natsReconnectMax
	if attempt < 16 {
		d = min(natsReconnectMin<<max(attempt-1, 0), natsReconnectMax)
	}
	return d/2 + rand.N(d/2+1)
}

// Name returns the uplink's name.
func (n *NATS) Name() string { return n.name }

// Connected reports whether the client is connected to a server now.
func (n *NATS) Connected() bool { return n.nc.IsConnected() }

// Deliver publishes every entry of batch and returns nil when all of them
// were acknowledged by JetStream or, for subjects no stream covers, flushed to
// the server (see NATS for what that guarantees). It keeps at most the
// configured number of JetStream publishes awaiting their ack.
//
// On the first failure, or when ctx ends, it returns an error that names the
// entry and wraps the cause (ctx.Err() included); entries before it may have
// been delivered, and the caller retries the whole batch, which JetStream's
// deduplication makes harmless. An entry whose subject is not valid gives an
// error wrapping ErrInvalidSubject. If ctx has no deadline, each wait is
// bounded by the ack timeout.
func (n *NATS) Deliver(ctx context.Context, batch []buffer.Entry) error {
	if len(batch) == 0 {
		return nil
	}
	err := n.deliver(ctx, batch)
	clear(n.pending)
	n.pending = n.pending[:0]
	n.careful = err != nil
	if err != nil {
		n.Errors.Add(1)
		// A publish that is still pending may be sent again by the client
		// (retry on no responders) with its body: never reuse those bytes.
		n.slab = nil
	}
	return err
}

func (n *NATS) deliver(ctx context.Context, batch []buffer.Entry) error {
	now := time.Now()
	if r := n.nc.Stats().Reconnects; r != n.reconnects || len(n.routes) > natsMaxRoutes {
		clear(n.routes)
		clear(n.streams)
		n.reconnects = r
	}
	if n.pack != nil {
		return n.deliverPacked(ctx, now, batch)
	}
	if stream, err := n.fastStream(ctx, now, batch); err != nil {
		return err
	} else if stream != "" {
		return n.deliverFast(ctx, now, stream, batch)
	}

	slab := n.slabFor(batch)

	var st publishState
	for i := range batch {
		e := &batch[i]
		rt, err := n.route(ctx, now, e.Rule)
		if err != nil {
			return n.routeErr(e.Seq, err)
		}

		start := len(slab)
		slab = n.env.Append(slab, e)
		msg := &nats.Msg{Subject: rt.subject, Data: slab[start:len(slab):len(slab)]}
		if err := n.send(ctx, &st, rt, msg, n.msgID(e.Seq, e.Seq), e.Seq, e.Seq, 1); err != nil {
			return err
		}
	}

	if err := n.finish(ctx, &st); err != nil {
		return err
	}
	n.slab = slab
	return nil
}

// slabFor returns an empty slab that holds the envelopes of batch. All
// bodies go into one slab sized up front; a message keeps a slice of it
// until its ack arrived, so the slab is reused only after a batch that ended
// with every ack in.
func (n *NATS) slabFor(batch []buffer.Entry) []byte {
	size := 0
	for i := range batch {
		size += len(n.env.prefix) + 21 + len(batch[i].Payload) + len(`,"payload":}`)
	}
	if cap(n.slab) < size {
		return make([]byte, 0, size)
	}
	return n.slab[:0]
}

// msgID returns the Nats-Msg-Id of the entries first to last:
// <gateway>-<seq> for one, <gateway>-<first>-<last> for a pack.
func (n *NATS) msgID(first, last uint64) string {
	return string(n.appendMsgID(first, last))
}

// appendMsgID writes the Nats-Msg-Id of the entries first to last into the
// uplink's scratch buffer, valid until its next use, and returns it.
func (n *NATS) appendMsgID(first, last uint64) []byte {
	n.scratch = append(n.scratch[:0], n.gateway...)
	n.scratch = append(n.scratch, '-')
	n.scratch = strconv.AppendUint(n.scratch, first, 10)
	if last != first {
		n.scratch = append(n.scratch, '-')
		n.scratch = strconv.AppendUint(n.scratch, last, 10)
	}
	return n.scratch
}

// send publishes msg, which holds records entries from seq first to last,
// on rt: to JetStream where a stream covers the subject, keeping at most
// maxInFlight publishes awaiting their ack, else with core NATS (st counts
// those for the flush that confirms them).
func (n *NATS) send(ctx context.Context, st *publishState, rt *natsRoute, msg *nats.Msg, msgID string, first, last uint64, records int) error {
	if rt.stream == "" {
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header[jetstream.MsgIDHeader] = []string{msgID}
		if err := n.nc.PublishMsg(msg); err != nil {
			return n.publishErr(first, records, rt.subject, err)
		}
		st.coreN += uint64(records)
		st.coreLast = last
		return nil
	}
	if len(n.pending)-st.head >= n.maxInFlight {
		if err := n.await(ctx, n.pending[st.head]); err != nil {
			return err
		}
		n.pending[st.head] = natsPending{}
		st.head++
	}
	fut, err := n.js.PublishMsgAsync(msg, jetstream.WithMsgID(msgID), jetstream.WithStallWait(n.ackTimeout))
	if err != nil {
		return n.publishErr(first, records, rt.subject, err)
	}
	n.pending = append(n.pending, natsPending{fut: fut, seq: first, records: records, subject: rt.subject})
	return nil
}

// route returns where entries of the rule go, asking the server which stream
// covers the subject when it is not known or no longer trusted.
func (n *NATS) route(ctx context.Context, now time.Time, rule string) (*natsRoute, error) {
	rt := n.routes[rule]
	if rt != nil && now.Sub(rt.checked) < natsCoverageTTL {
		return rt, nil
	}
	if rt == nil {
		n.scratch = n.subject.Append(n.scratch[:0], n.gateway, rule)
		if !validSubject(n.scratch) {
			return nil, fmt.Errorf("rule %q: %w %q", rule, ErrInvalidSubject, n.scratch)
		}
		rt = &natsRoute{subject: string(n.scratch)}
	}
	lctx, cancel := n.bound(ctx)
	stream, err := n.js.StreamNameBySubject(lctx, rt.subject)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders): // no JetStream on the server
		stream = ""
	default:
		return nil, fmt.Errorf("find stream for %s: %w", rt.subject, notConnected(err))
	}
	rt.batched = stream != "" && n.fastAllowed(ctx, now, stream)
	old, known := n.routes[rule]
	switch {
	case known && old.stream != stream && stream == "":
		n.log.Warn("no stream covers subject any more: publishing with core NATS, unacknowledged",
			"subject", rt.subject, "was", old.stream)
	case known && old.stream != stream:
		n.log.Info("stream covers subject", "subject", rt.subject, "stream", stream, "was", old.stream)
	case !known && stream == "":
		n.log.Info("no stream covers subject: publishing with core NATS, unacknowledged", "subject", rt.subject)
	case !known:
		n.log.Info("stream covers subject", "subject", rt.subject, "stream", stream)
	}
	rt.stream = stream
	rt.checked = now
	n.routes[rule] = rt
	return rt, nil
}

// fastAllowed says whether stream allows fast batch publishing, asking the
// server at most once per natsCoverageTTL. A user who may not read the
// stream's configuration ($JS.API.STREAM.INFO) publishes with an ack per
// message, as before fast batches.
func (n *NATS) fastAllowed(ctx context.Context, now time.Time, stream string) bool {
	if n.noFast || n.pack != nil {
		return false
	}
	if c, ok := n.streams[stream]; ok && now.Sub(c.checked) < c.ttl {
		return c.batched
	}
	// Not the caller's deadline: a request the user may not make goes
	// unanswered until it ends.
	lctx, cancel := context.WithTimeout(ctx, n.ackTimeout)
	s, err := n.js.Stream(lctx, stream)
	cancel()
	c := natsStream{checked: now, ttl: natsCoverageTTL}
	if err != nil {
		// Asked again only after an hour: each time costs a timeout.
		c.ttl = time.Hour
		n.log.Info("cannot read the stream's configuration: an ack per message", "stream", stream, "err", err)
	} else {
		c.batched = s.CachedInfo().Config.AllowBatchPublish
	}
	n.streams[stream] = c
	return c.batched
}

// await waits for the ack of one JetStream publish.
func (n *NATS) await(ctx context.Context, p natsPending) error {
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		// The client times the ack out itself; this is a backstop. One
		// timer, reset per wait: a publish costs no timer allocation.
		if n.ackTimer == nil {
			n.ackTimer = time.NewTimer(2 * n.ackTimeout)
		} else {
			n.ackTimer.Reset(2 * n.ackTimeout)
		}
		defer n.ackTimer.Stop()
		timeout = n.ackTimer.C
	}
	select {
	case ack := <-p.fut.Ok():
		n.Published.Add(uint64(p.records))
		if ack.Duplicate {
			n.Duplicates.Add(uint64(p.records))
		}
		return nil
	case err := <-p.fut.Err():
		return n.publishErr(p.seq, p.records, p.subject, err)
	case <-ctx.Done():
		return n.publishErr(p.seq, p.records, p.subject, ctx.Err())
	case <-timeout:
		return n.publishErr(p.seq, p.records, p.subject, jetstream.ErrAsyncPublishTimeout)
	}
}

// publishErr builds the error of a failed publish of records entries from
// seq on and forgets the subject's stream, so that the next batch asks again
// (the stream may be gone). A message of one entry that is too large for the
// server or the stream is a PermanentError: no retry can deliver it.
func (n *NATS) publishErr(seq uint64, records int, subject string, err error) error {
	for r, rt := range n.routes {
		if rt.subject == subject {
			delete(n.routes, r)
		}
	}
	err = fmt.Errorf("nats %s: publish seq %d to %s: %w", n.name, seq, subject, notConnected(err))
	if records == 1 && (errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum)) {
		return permanent(seq, err)
	}
	return err
}

// routeErr builds the error of an entry whose subject could not be found;
// an invalid subject is a PermanentError.
func (n *NATS) routeErr(seq uint64, err error) error {
	err = fmt.Errorf("nats %s: publish seq %d: %w", n.name, seq, err)
	if errors.Is(err, ErrInvalidSubject) {
		return permanent(seq, err)
	}
	return err
}

// notConnected replaces the client's error for a publish while it is
// reconnecting (no reconnect buffer: "outbound buffer limit exceeded") with
// ErrNotConnected, which says what happened.
func notConnected(err error) error {
	if errors.Is(err, nats.ErrReconnectBufExceeded) {
		return ErrNotConnected
	}
	return err
}

// bound returns ctx, limited to the ack timeout if it has no deadline.
func (n *NATS) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.ackTimeout)
}

// Close drains the connection (pending publishes are sent and their acks
// awaited, for up to the client's drain timeout) and closes it. It returns
// nil when the connection was closed cleanly or could not be drained because
// it was not connected; it is then closed all the same.
func (n *NATS) Close() error {
	closed := n.nc.StatusChanged(nats.CLOSED)
	defer n.nc.RemoveStatusListener(closed)
	err := n.nc.Drain()
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return nil
	case errors.Is(err, nats.ErrConnectionReconnecting):
		return nil // Drain closed it
	case err != nil:
		n.nc.Close()
		return fmt.Errorf("nats %s: drain: %w", n.name, err)
	}
	if !n.nc.IsClosed() {
		<-closed
	}
	return nil
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// Defaults of a Forwarder.
const (
	// DefaultBatchRecords is large enough that the byte bound usually
	// decides: 1 MiB holds ~4,000 envelopes of 200 bytes. A delivery ends
	// with a round trip to the upstream (the fast batch's commit, the last
	// acks), so fewer, larger batches keep it busy: JetStream fast batches
	// went from ~175k to ~205k envelopes/s going from 500 to 4,096 records
	// (tools/benchuplink --batch).
	DefaultBatchRecords = 4096
	DefaultBatchBytes   = 1 << 20
	DefaultBackoffMin   = 100 * time.Millisecond
	DefaultBackoffMax   = 30 * time.Second
	// DefaultSplitBatches is the backlog, in batches, above which live
	// entries are sent beside the backlog (see Forwarder). A batch counts
	// as the records its byte bound lets through at splitEntryBytes each, so
	// that a rate cap, which shrinks batches to its burst, shrinks the
	// backlog live outputs wait behind with them.
	DefaultSplitBatches = 10
	splitEntryBytes     = 256
	// entryOverhead is added to an entry's payload, rule and key lengths to
	// estimate the bytes it takes on the wire (envelope members, subject or
	// topic, headers); batches and the rate cap count these estimates.
	entryOverhead = 64
	// noRead is a position past every seq: Read reads nothing of a
	// priority whose position is noRead.
	noRead = math.MaxUint64 - 1
	// unbounded is the bound of a lane that follows the newest entries.
	unbounded = math.MaxUint64
	// ackEvery is how often, at most, the forwarder saves its cursor in
	// the buffer while deliveries keep coming; after a pause the first
	// delivery is saved at once. Each save is a bbolt transaction with two
	// fsyncs that rewrites whole pages, and under a steady flow the
	// forwarder delivers after every group commit: W1a (540 records a
	// second) saved ~100 cursors a second, half of its fsyncs. A crash
	// sends what was delivered since the last save again, as it did
	// before within a delivery's own round trip: JetStream drops it by
	// Nats-Msg-Id within its duplicate window, and Kafka consumers see the
	// same seq again, as after any replay.
	ackEvery = 100 * time.Millisecond
)

// State is what a forwarder is doing, for metrics and health.
type State int32

// States of a forwarder.
const (
	StateStarting  State = iota // running, no delivery attempted yet
	StateConnected              // the last delivery succeeded (or nothing was due)
	StateBackoff                // the last delivery failed; waiting to retry
	StateStopped                // Run returned
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateConnected:
		return "connected"
	case StateBackoff:
		return "backoff"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Status is a forwarder's state for metrics and health.
type Status struct {
	Uplink      string
	State       State
	Connected   bool      // the uplink's own view, when it has one (Connected() bool); else State == StateConnected
	LastError   string    // of the last failed delivery, read or ack; "" if none yet
	LastErrorAt time.Time // when it happened
	Lag         uint64    // seqs between the uplink's acknowledged cursor and the newest entry
	Backlog     bool      // a backlog is draining beside live entries
	LiveFrom    uint64    // while Backlog: entries after this seq go in the live lane
	Delivered   uint64
	Failures    uint64
	Rejected    uint64 // entries the upstream rejected for good, set aside
}

// Forwarder moves entries from the buffer to one uplink: it reads batches from
// the uplink's own cursor, delivers them, and acks the cursor only after the
// upstream acknowledged the batch. A failing uplink is retried with capped
// exponential backoff and jitter, one entry per attempt while it is down
// (disconnected or unreachable); it never blocks other uplinks or ingest, as
// the buffer absorbs the backlog.
//
// Batches. A batch holds up to the configured records and bytes (wire bytes
// estimated as payload, rule and key plus 64); when the link is idle, a batch
// that is not full waits up to the linger for more entries, unless it holds an
// alert. High-priority entries (alerts) come first in every batch.
//
// Backlog beside live entries. When the uplink is more than a threshold of
// entries behind (after an outage, say), the forwarder splits its reading in
// two lanes: the backlog lane reads from the acknowledged cursor up to the
// newest seq at the moment of the split, the live lane from there on. Every
// batch takes the alerts of both lanes first, then gives up to half of what is
// left to live entries and the rest to the backlog, so fresh summaries keep
// arriving within a batch's time while the backlog drains, and the bandwidth
// cap holds for both together. Only the backlog lane moves the durable cursor
// (the buffer's cursor is a watermark); when the backlog lane reaches the split
// point, the lanes merge and the cursor jumps to the live lane's position. A
// crash while split sends the live entries delivered since the split again
// (JetStream drops them by Nats-Msg-Id; Kafka consumers by seq), and so does
// moving the split point: while deliveries fail, the split point follows the
// newest seq, and moves there once more on the first delivery that succeeds (it
// may have been composed before the outage ended), so that live entries lead
// when the link is back (free while the live lane has sent nothing; otherwise
// only once it is behind by the threshold, and its entries since the split go
// again). While a backlog drains, upstream receives each priority in seq order
// per lane, not overall; with the split off (WithBacklogSplit(-1)) every batch
// continues where the last one ended.
//
// Bandwidth cap. With WithRateLimit the estimated bytes of all batches stay
// within the cap: a token bucket with a burst of a fifth of a second's bytes
// (at least 4 KiB), and batches no larger than the burst.
//
// Concurrency. Run is called once, from the forwarder's own goroutine. Status
// and the counters may be read from any goroutine. The OnAck callback runs on
// Run's goroutine.
type Forwarder struct {
	// Buffer, Uplink, BatchSize, Logger and OnAck configure a Forwarder made
	// as a struct literal; NewForwarder sets Buffer and Uplink and takes the
	// rest as options.
	Buffer    *buffer.Buffer
	Uplink    uplink.Uplink
	BatchSize int
	Logger    *slog.Logger
	// OnAck, when set, is called after the cursor moved to pos.
	OnAck func(pos buffer.Position)

	// Delivered counts entries the uplink acknowledged; DeliveredBytes
	// their estimated wire bytes.
	Delivered      atomic.Uint64
	DeliveredBytes atomic.Uint64
	// Batches counts successful Deliver calls, Failures failed ones.
	Batches  atomic.Uint64
	Failures atomic.Uint64
	// Splits counts the times a backlog started draining beside live
	// entries; Resent counts live entries that will be (or were) sent
	// again because the live lane was reset (see Forwarder).
	Splits atomic.Uint64
	Resent atomic.Uint64
	// Rejected counts entries the uplink refused for good (a
	// uplink.PermanentError: an invalid subject, a record too large): they
	// are set aside, reported to the OnReject hook, and the rest goes on.
	Rejected atomic.Uint64

	cfg     forwardConfig
	hasCfg  bool
	state   atomic.Int32
	backlog atomic.Bool
	// liveFrom is the seq after which entries go in the live lane, as of
	// the last split or lane move (kept after the lanes merge).
	liveFrom atomic.Uint64

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time
}

type forwardConfig struct {
	maxRecords  int
	maxBytes    int
	linger      time.Duration
	rate        int64 // bytes per second; 0: no cap
	backoffMin  time.Duration
	backoffMax  time.Duration
	split       int // backlog in entries that splits; <0: never; 0: default
	log         *slog.Logger
	onAck       func(buffer.Position)
	onDelivered func(buffer.Position)
	onReject    func(e *buffer.Entry, err error)
}

// ForwarderOption configures NewForwarder.
type ForwarderOption func(*forwardConfig)

// WithBatch sets the most records and estimated bytes of one batch (defaults
// 4,096 and 1 MiB; 0 keeps the default) and how long an idle forwarder waits for
// a batch to fill (default 0: deliver at once).
func WithBatch(records, bytes int, linger time.Duration) ForwarderOption {
	return func(c *forwardConfig) {
		if records > 0 {
			c.maxRecords = records
		}
		if bytes > 0 {
			c.maxBytes = bytes
		}
		c.linger = max(linger, 0)
	}
}

// WithOnReject sets a function called, on the forwarder's goroutine, for
// every entry the uplink rejected for good; e is valid only during the call.
func WithOnReject(fn func(e *buffer.Entry, err error)) ForwarderOption {
	return func(c *forwardConfig) { c.onReject = fn }
}

// WithRateLimit caps delivery at bytesPerSecond estimated wire bytes (0: no
// cap).
func WithRateLimit(bytesPerSecond int64) ForwarderOption {
	return func(c *forwardConfig) { c.rate = max(bytesPerSecond, 0) }
}

// WithBackoff sets the retry delay after a failure: min doubling up to max,
// each drawn with ±20% jitter (defaults 100ms and 30s).
func WithBackoff(min, max time.Duration) ForwarderOption {
	return func(c *forwardConfig) {
		if min > 0 {
			c.backoffMin = min
		}
		if max > 0 {
			c.backoffMax = max
		}
	}
}

// WithBacklogSplit sets the backlog, in entries, above which live entries are
// sent beside it (default 10 batches); a negative n never splits, so that
// upstream receives every priority in seq order.
func WithBacklogSplit(n int) ForwarderOption {
	return func(c *forwardConfig) { c.split = n }
}

// WithForwarderLogger sets the logger (default slog.Default()).
func WithForwarderLogger(l *slog.Logger) ForwarderOption {
	return func(c *forwardConfig) { c.log = l }
}

// WithOnAck sets a function called on Run's goroutine after the cursor
// moved and was saved in the buffer (at most every ackEvery while
// deliveries keep coming).
func WithOnAck(fn func(pos buffer.Position)) ForwarderOption {
	return func(c *forwardConfig) { c.onAck = fn }
}

// WithOnDelivered sets a function called on Run's goroutine as soon as the
// upstream acknowledged entries that move the cursor to pos, before the
// cursor is saved.
func WithOnDelivered(fn func(pos buffer.Position)) ForwarderOption {
	return func(c *forwardConfig) { c.onDelivered = fn }
}

// NewForwarder returns a forwarder of buf's entries to up; Run starts it.
func NewForwarder(buf *buffer.Buffer, up uplink.Uplink, opts ...ForwarderOption) *Forwarder {
	f := &Forwarder{Buffer: buf, Uplink: up, hasCfg: true}
	for _, o := range opts {
		o(&f.cfg)
	}
	return f
}

// config returns the configuration with defaults filled in.
func (f *Forwarder) config() forwardConfig {
	c := f.cfg
	if !f.hasCfg {
		c = forwardConfig{maxRecords: f.BatchSize, log: f.Logger, onAck: f.OnAck}
	}
	if c.maxRecords <= 0 {
		c.maxRecords = DefaultBatchRecords
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultBatchBytes
	}
	if c.backoffMin <= 0 {
		c.backoffMin = DefaultBackoffMin
	}
	if c.backoffMax < c.backoffMin {
		c.backoffMax = max(DefaultBackoffMax, c.backoffMin)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// Status returns the forwarder's state. It reads the buffer's cursor for the
// lag, so it costs one read transaction.
func (f *Forwarder) Status() Status {
	s := Status{
		Uplink:    f.Uplink.Name(),
		State:     State(f.state.Load()),
		Lag:       f.Buffer.Lag(f.Uplink.Name()),
		Backlog:   f.backlog.Load(),
		Delivered: f.Delivered.Load(),
		Failures:  f.Failures.Load(),
		Rejected:  f.Rejected.Load(),
	}
	if s.Backlog {
		s.LiveFrom = f.liveFrom.Load()
	}
	if c, ok := f.Uplink.(interface{ Connected() bool }); ok {
		s.Connected = c.Connected()
	} else {
		s.Connected = s.State == StateConnected
	}
	f.errMu.Lock()
	s.LastError, s.LastErrorAt = f.lastErr, f.lastErrAt
	f.errMu.Unlock()
	return s
}

func (f *Forwarder) setErr(err error) {
	f.errMu.Lock()
	f.lastErr, f.lastErrAt = err.Error(), time.Now()
	f.errMu.Unlock()
}

// lanes is where the forwarder reads: back is the acknowledged cursor;
// while split, live is the position of the live lane, which started at
// liveFrom, and back reads only up to liveFrom.
type lanes struct {
	back     buffer.Position
	split    bool
	liveFrom uint64
	live     buffer.Position
}

// Run forwards until ctx ends. It returns nil then, or an error when the
// uplink's cursor cannot be read at the start.
func (f *Forwarder) Run(ctx context.Context) error {
	defer f.state.Store(int32(StateStopped))
	cfg := f.config()
	name := f.Uplink.Name()
	log := cfg.log.With("uplink", name)
	cursor, err := f.Buffer.Cursor(name)
	if err != nil {
		return fmt.Errorf("forward to %s: %w", name, err)
	}
	var lim *rate.Limiter
	if cfg.rate > 0 {
		burst := int(max(cfg.rate/5, 4096))
		lim = rate.NewLimiter(rate.Limit(cfg.rate), burst)
		cfg.maxBytes = min(cfg.maxBytes, burst)
	}
	if cfg.split == 0 {
		cfg.split = DefaultSplitBatches * max(1, min(cfg.maxRecords, cfg.maxBytes/splitEntryBytes))
	}
	ln := lanes{back: cursor}
	var (
		batch       []buffer.Entry
		backoff     time.Duration
		liveSent    uint64 // entries the live lane delivered since the split
		lastAttempt bool   // the last round attempted a delivery that failed
		unreachable bool   // and the upstream could not be reached
		// rejected are the entries the uplink refused for good, left out
		// of batches until the cursor of their priority passed them.
		rejected = map[uint64]buffer.Priority{}
	)
	var lastAck time.Time // of the last cursor saved in the buffer
	delivered := cursor   // the cursor as far as the upstream acknowledged
	ack := func() error {
		if err := f.Buffer.Ack(name, ln.back); err != nil {
			return err
		}
		cursor, lastAck = ln.back, time.Now()
		for seq, p := range rejected {
			if seq <= cursor.High && p == buffer.PriorityHigh || seq <= cursor.Normal && p != buffer.PriorityHigh {
				delete(rejected, seq)
			}
		}
		if cfg.onAck != nil {
			cfg.onAck(cursor)
		}
		return nil
	}
	// saveBeforeWait saves a pending cursor before a wait that may last
	// (a linger, the rate cap, a backoff); an error is retried later.
	saveBeforeWait := func() {
		if ln.back != cursor {
			_ = ack()
		}
	}
	ackTimer := time.NewTimer(ackEvery)
	ackTimer.Stop()
	defer ackTimer.Stop()
	fail := func(what string, err error, args ...any) {
		f.setErr(err)
		f.state.Store(int32(StateBackoff))
		log.Warn(what, append([]any{"err", err}, args...)...)
		saveBeforeWait()
		backoff = f.wait(ctx, cfg, backoff)
	}
	// followNewest moves the live lane of l to the newest entry while the
	// link is down (or has just come back), so that live entries lead when
	// it is up: for free while the lane has sent nothing, else once it is
	// behind by the split threshold (its entries go again).
	followNewest := func(l *lanes) {
		if !l.split {
			return
		}
		newest := f.Buffer.LastSeq()
		if liveSent > 0 && newest-min(newest, max(l.live.High, l.live.Normal, l.liveFrom)) <= uint64(cfg.split) {
			return
		}
		if liveSent > 0 {
			f.Resent.Add(liveSent)
			log.Info("live lane fell behind: its entries since the split will be sent again", "entries", liveSent)
		}
		l.liveFrom, l.live = newest, buffer.Position{High: newest, Normal: newest}
		f.liveFrom.Store(newest)
		liveSent = 0
	}
	for ctx.Err() == nil {
		changed := f.Buffer.Changed()
		last := f.Buffer.LastSeq()

		// Split off a backlog.
		if cfg.split > 0 && !ln.split && last-min(last, max(ln.back.High, ln.back.Normal)) > uint64(cfg.split) {
			ln.split, ln.liveFrom, ln.live = true, last, buffer.Position{High: last, Normal: last}
			f.liveFrom.Store(last)
			liveSent = 0
			f.Splits.Add(1)
			f.backlog.Store(true)
			log.Info("backlog: sending live entries beside it", "backlog_to_seq", last, "acked", ln.back)
		}

		var (
			next  lanes
			bytes int
			nLive int
		)
		// While the link is down (the last delivery could not reach the
		// upstream, or the uplink says it is disconnected), each retry
		// carries a single entry (an alert if any waits). A probe costs
		// next to nothing on a dead link, and the attempt in flight when
		// the link comes back cannot carry summaries composed before the
		// alerts that came during the outage: once one entry went,
		// batches are full again, alerts first. A delivery the upstream
		// answered with an error (an entry it refuses, say) is retried
		// whole: the uplink needs the batch to find the entry.
		records := cfg.maxRecords
		if lastAttempt {
			// The live lane starts from the newest entry, as it was
			// once the backoff is over.
			followNewest(&ln)
			if unreachable || !connected(f.Uplink) {
				records = 1
			}
		}
		batch, next, bytes, nLive, err = f.compose(name, ln, batch[:0], records, cfg.maxBytes)
		if err == nil && cfg.linger > 0 && !lastAttempt && len(batch) > 0 && len(batch) < cfg.maxRecords && bytes < cfg.maxBytes && !hasHigh(batch) {
			saveBeforeWait()
			batch, next, bytes, nLive, err = f.linger(ctx, cfg, name, next, batch, bytes, nLive, changed)
		}
		if err != nil {
			fail("read buffer", err)
			continue
		}
		if len(rejected) > 0 {
			batch = slices.DeleteFunc(batch, func(e buffer.Entry) bool { _, ok := rejected[e.Seq]; return ok })
		}
		if len(batch) > 0 {
			if lim != nil {
				saveBeforeWait()
				if err := reserve(ctx, lim, bytes); err != nil {
					continue // ctx ended
				}
			}
			if err := f.Uplink.Deliver(ctx, batch); err != nil {
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					break // the stop: what went before is saved below
				}
				if perm, ok := uplink.IsPermanent(err); ok {
					if i := slices.IndexFunc(batch, func(e buffer.Entry) bool { return e.Seq == perm.Seq }); i >= 0 {
						// Retrying cannot deliver it: set it aside and send
						// the rest at once (what went before it is dropped
						// as duplicates or sent again, as after any failure).
						e := &batch[i]
						rejected[e.Seq] = e.Priority
						f.Rejected.Add(1)
						f.setErr(err)
						log.Error("upstream rejected an entry for good: set aside", "seq", e.Seq, "rule", e.Rule, "err", err)
						if cfg.onReject != nil {
							cfg.onReject(e, err)
						}
						continue
					}
				}
				f.Failures.Add(1)
				lastAttempt, unreachable = true, uplink.IsUnreachable(err)
				fail("deliver failed; retrying", err, "entries", len(batch), "first_seq", batch[0].Seq)
				continue
			}
			f.Delivered.Add(uint64(len(batch)))
			f.DeliveredBytes.Add(uint64(bytes))
			f.Batches.Add(1)
			liveSent += uint64(nLive)
			if lastAttempt {
				// The link is back. The batch that went may have been
				// composed long ago (a delivery in flight across the
				// outage), and entries kept coming since: the live lane
				// moves once more, so that what comes next leads.
				followNewest(&next)
			}
			backoff, lastAttempt, unreachable = 0, false, false
			f.state.Store(int32(StateConnected))
		}
		if next.split && next.back.High >= next.liveFrom && next.back.Normal >= next.liveFrom {
			log.Info("backlog drained", "live_sent", liveSent)
			next.split, next.back = false, next.live
			f.backlog.Store(false)
		}
		idle := len(batch) == 0 && next == ln
		ln = next
		if ln.back != delivered {
			delivered = ln.back
			if cfg.onDelivered != nil {
				cfg.onDelivered(delivered)
			}
		}
		if ln.back != cursor && time.Since(lastAck) >= ackEvery {
			if err := ack(); err != nil {
				fail("ack buffer", err)
				continue
			}
		}
		if idle {
			var due <-chan time.Time
			if ln.back != cursor {
				ackTimer.Reset(ackEvery - time.Since(lastAck))
				due = ackTimer.C
			}
			select {
			case <-changed:
			case <-due:
			case <-ctx.Done():
			}
			ackTimer.Stop()
		}
	}
	if ln.back != cursor {
		if err := ack(); err != nil {
			log.Warn("ack buffer at stop: what was delivered since the last ack will be sent again", "err", err)
		}
	}
	return nil
}

// compose appends the next batch to dst, reading from ln, and returns it with
// the lanes as they are once it is delivered, its estimated bytes and how many
// of its entries came from the live lane.
func (f *Forwarder) compose(name string, ln lanes, dst []buffer.Entry, maxRecords, maxBytes int) ([]buffer.Entry, lanes, int, int, error) {
	next := ln
	bytes := 0
	var err error
	read := func(p buffer.Priority, after, bound uint64, records, budget int) uint64 {
		if err != nil || records <= 0 || budget <= 0 && len(dst) > 0 {
			return after
		}
		var n int
		var pos uint64
		dst, pos, n, err = f.readLane(name, p, after, bound, records, budget, dst)
		bytes += n
		return pos
	}
	left := func() (int, int) { return maxRecords - len(dst), maxBytes - bytes }

	if !ln.split {
		r, b := left()
		next.back.High = read(buffer.PriorityHigh, ln.back.High, unbounded, r, b)
		r, b = left()
		next.back.Normal = read(buffer.PriorityNormal, ln.back.Normal, unbounded, r, b)
		return dst, next, bytes, 0, err
	}

	// Alerts of both lanes first, in seq order, then normal entries: up to
	// half of what is left for the backlog first, the live lane next, and
	// the backlog again for what the live lane did not take.
	r, b := left()
	next.back.High = read(buffer.PriorityHigh, ln.back.High, ln.liveFrom, r, b)
	n0 := len(dst)
	r, b = left()
	next.live.High = read(buffer.PriorityHigh, ln.live.High, unbounded, r, b)
	nLive := len(dst) - n0

	r, b = left()
	mark := len(dst)
	next.back.Normal = read(buffer.PriorityNormal, ln.back.Normal, ln.liveFrom, (r+1)/2, (b+1)/2)
	backDone := next.back.Normal >= ln.liveFrom
	n0 = len(dst)
	r, b = left()
	next.live.Normal = read(buffer.PriorityNormal, ln.live.Normal, unbounded, r, b)
	nLive += len(dst) - n0
	if !backDone && len(dst)-mark < maxRecords && err == nil {
		// The live lane left room: give it to the backlog. Its entries
		// must stay in seq order, so they are read into a new slice and
		// placed before the live ones.
		r, b = left()
		if r > 0 && b > 0 {
			var more []buffer.Entry
			var n int
			var pos uint64
			more, pos, n, err = f.readLane(name, buffer.PriorityNormal, next.back.Normal, ln.liveFrom, r, b, nil)
			if err == nil && len(more) > 0 {
				dst = append(dst, more...)
				copy(dst[n0+len(more):], dst[n0:len(dst)-len(more)])
				copy(dst[n0:], more)
				bytes += n
				next.back.Normal = pos
			}
		}
	}
	return dst, next, bytes, nLive, err
}

// readLane appends to dst up to records entries of priority p routed to the
// uplink with seq in (after, bound], within budget estimated bytes (the first
// entry of an empty batch always fits). It returns the position the lane
// reaches once they are delivered: bound when every entry up to bound has
// been read, and the bytes added.
func (f *Forwarder) readLane(name string, p buffer.Priority, after, bound uint64, records, budget int, dst []buffer.Entry) ([]buffer.Entry, uint64, int, error) {
	if after >= bound {
		return dst, after, 0, nil
	}
	pos := buffer.Position{High: noRead, Normal: after}
	if p == buffer.PriorityHigh {
		pos = buffer.Position{High: after, Normal: noRead}
	}
	n0 := len(dst)
	dst, scanned, err := f.Buffer.Read(name, pos, n0+records, dst)
	if err != nil {
		return dst[:n0], after, 0, err
	}
	next := scanned.Normal
	if p == buffer.PriorityHigh {
		next = scanned.High
	}
	got := dst[n0:]
	cut := len(got)
	for i := range got {
		if got[i].Seq > bound {
			cut = i
			break
		}
	}
	bytes := 0
	for i := 0; i < cut; i++ {
		sz := EntrySize(&got[i])
		if bytes+sz > budget && (i > 0 || n0 > 0) {
			// Cut by bytes: the lane continues after the last entry kept.
			if i == 0 {
				return dst[:n0], after, 0, nil
			}
			return dst[:n0+i], got[i-1].Seq, bytes, nil
		}
		bytes += sz
	}
	dst = dst[:n0+cut]
	if bound != unbounded && (cut < len(got) || len(got) < records || next >= bound) {
		next = bound // everything up to bound was read
	}
	return dst, next, bytes, nil
}

// linger waits up to the linger for a batch that is not full to fill,
// appending what arrives; it stops at the first alert.
func (f *Forwarder) linger(ctx context.Context, cfg forwardConfig, name string, ln lanes, batch []buffer.Entry, bytes, nLive int, changed <-chan struct{}) ([]buffer.Entry, lanes, int, int, error) {
	t := time.NewTimer(cfg.linger)
	defer t.Stop()
	for len(batch) < cfg.maxRecords && bytes < cfg.maxBytes {
		select {
		case <-changed:
		case <-t.C:
			return batch, ln, bytes, nLive, nil
		case <-ctx.Done():
			return batch, ln, bytes, nLive, nil
		}
		changed = f.Buffer.Changed()
		n0 := len(batch)
		var (
			n, live int
			err     error
		)
		batch, ln, n, live, err = f.compose(name, ln, batch, cfg.maxRecords, cfg.maxBytes-bytes)
		if err != nil {
			return batch[:n0], ln, bytes, nLive, err
		}
		bytes += n
		nLive += live
		if hasHigh(batch[n0:]) {
			break
		}
	}
	return batch, ln, bytes, nLive, nil
}

func hasHigh(b []buffer.Entry) bool {
	for i := range b {
		if b[i].Priority == buffer.PriorityHigh {
			return true
		}
	}
	return false
}

// connected reports whether up says it is connected; an uplink that does
// not say counts as connected.
func connected(up uplink.Uplink) bool {
	c, ok := up.(interface{ Connected() bool })
	return !ok || c.Connected()
}

// EntrySize estimates the bytes an entry takes on the wire, as batches and
// the rate cap count them.
func EntrySize(e *buffer.Entry) int {
	return len(e.Payload) + len(e.Rule) + len(e.Key) + entryOverhead
}

// reserve waits until the limiter allows n bytes (at most its burst). It
// returns ctx.Err() if ctx ends first.
func reserve(ctx context.Context, lim *rate.Limiter, n int) error {
	r := lim.ReserveN(time.Now(), min(n, lim.Burst()))
	d := r.Delay()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// wait sleeps for the next backoff step (doubling from the minimum to the
// maximum, ±20% jitter) and returns it.
func (f *Forwarder) wait(ctx context.Context, cfg forwardConfig, prev time.Duration) time.Duration {
	next := min(max(prev*2, cfg.backoffMin), cfg.backoffMax)
	d := time.Duration(float64(next) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return next
}

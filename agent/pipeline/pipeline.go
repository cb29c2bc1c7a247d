// Package pipeline is the agent's single-goroutine core: it decodes messages
// into records, runs the rule plans, and group-commits their outputs, the
// plans' state and the inputs' redelivery records to the buffer; only after a
// commit returns does it release the inputs that commit covers.
package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/rules"
)

// Input is the input stage of one configured input.
type Input struct {
	Name       string
	MaxPayload int            // bytes; 0: no limit
	Decoder    ingest.Decoder // nil: JSON
	Stage      *ingest.Stage  // topic fields, schema, static fields; nil: none

	json ingest.JSONDecoder
	// Redelivery record (DESIGN.md "Delivery guarantee" 2): packet id → hash
	// of topic and payload of messages whose commit succeeded.
	committed map[uint16]uint64
	pending   []redelivery // for the next commit
	reset     bool

	Stats InputStats
}

// InputStats are an input stage's counters.
type InputStats struct {
	Messages    atomic.Uint64
	DeadLetters atomic.Uint64
	Duplicates  atomic.Uint64 // redeliveries recognised and skipped
	mu          sync.Mutex
	lastDead    DeadLetter
}

// DeadLetter is a sample of a rejected message.
type DeadLetter struct {
	Topic  string
	Reason string
	Sample string // the payload's first bytes
	Time   time.Time
}

// LastDeadLetter returns the most recent dead letter.
func (s *InputStats) LastDeadLetter() DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastDead
}

// Rule is a compiled plan with where its records come from and its outputs go.
type Rule struct {
	Plan     *rules.Plan
	Input    int      // index of the input it reads
	To       []string // uplink names; empty: all
	Priority buffer.Priority
}

// Options tune group commit.
type Options struct {
	Gateway            string
	Tags               []rules.Field
	CommitInterval     time.Duration // longest an acked input waits for its commit
	CommitMaxRecords   int           // commit at once when this many inputs wait
	CheckpointInterval time.Duration // how often window state of unacked (QoS 0) input is saved
	TickInterval       time.Duration // how often windows are checked for closing
	Logger             *slog.Logger

	// OnCommit, when set, is called on the pipeline's goroutine after each
	// successful commit, before the inputs are acked: entries have their
	// Seq; oldest is the arrival of the oldest input (or the creation of the
	// first output) the commit covers; took is the commit's duration. It
	// must not block, nor keep entries after it returns.
	OnCommit func(entries []buffer.Entry, oldest time.Time, took time.Duration)
	// OnDeadLetter, when set, is called on the pipeline's goroutine for
	// every dead letter.
	OnDeadLetter func(input string, dl DeadLetter)
	// RouteDeadLetter, when set, is called on the pipeline's goroutine for
	// every dead letter after OnDeadLetter; an entry it returns goes into
	// the same commit as the message's ack, so a dead letter routed
	// upstream is durable exactly when its message is released.
	RouteDeadLetter func(input string, dl DeadLetter) (buffer.Entry, bool)
}

// Pipeline is driven by Run on one goroutine; Stats may be read from others.
type Pipeline struct {
	opts   Options
	buf    *buffer.Buffer
	inputs []*Input
	rules  []*Rule
	byIn   [][]*Rule
	log    *slog.Logger

	in     chan ingest.Message
	flushq chan flushReq
	reconf chan reconfReq

	// Records decoded and not yet given to the rules: consecutive
	// messages of one input go to its rules as a batch (rules.Set shares
	// the group-key work across rules and runs plan by plan, which keeps
	// each plan's state in cache). Empty outside the handling of messages.
	batch   []*rules.Record
	batchIn int
	recs    []*rules.Record // reused records; batch takes from the front
	held    []*ingest.Batch // handled source batches, released after their records' processBatch
	sets    []*rules.Set    // per input; nil until the first batch after a (re)start or swap
	emit    func(plan int, outs []rules.Output)

	// Pending work of the next commit.
	outs      []rules.Output
	entries   []buffer.Entry
	acks      []ingest.Acker
	positions map[positionKey]*ingest.Position // latest per scope and key
	waiting   int                              // messages since the last commit
	firstWait time.Time                        // arrival of the oldest of them
	lastSave  time.Time

	heartbeat  atomic.Int64             // unix ns of the loop's last tick
	finalFlush atomic.Pointer[[]string] // rules to flush when Run stops

	Stats Stats
}

// LastTick returns when the pipeline's loop last ran its ticker: a loop that
// stopped ticking is wedged (a commit that never returns, a deadlock).
func (p *Pipeline) LastTick() time.Time { return time.Unix(0, p.heartbeat.Load()) }

type positionKey struct{ scope, key string }

// redelivery is an MQTT message a commit covers: its packet id and the hash
// of its topic and payload.
type redelivery struct {
	id   uint16
	hash uint64
}

// redeliveryKVs encodes records for the buffer in one slab: bbolt keeps the
// slices until its transaction ends, and one allocation per commit beats two
// per message.
func redeliveryKVs(rs []redelivery) []buffer.KV {
	slab := make([]byte, 0, len(rs)*10)
	kvs := make([]buffer.KV, len(rs))
	for i, r := range rs {
		k := len(slab)
		slab = binary.BigEndian.AppendUint16(slab, r.id)
		v := len(slab)
		slab = binary.BigEndian.AppendUint64(slab, r.hash)
		kvs[i] = buffer.KV{Key: slab[k:v:v], Value: slab[v : v+8 : v+8]}
	}
	return kvs
}

// LoadPositions returns the positions saved in scope (a source reads them at
// start to resume where the last commit left it).
func (p *Pipeline) LoadPositions(scope string) ([]buffer.KV, error) { return p.buf.LoadState(scope) }

// Stats are the pipeline's counters.
type Stats struct {
	Commits      atomic.Uint64
	CommitErrors atomic.Uint64
	Outputs      atomic.Uint64
	CommitNanos  atomic.Uint64 // total time spent in Commit
}

// New builds a pipeline; Restore must be called before Run.
func New(buf *buffer.Buffer, inputs []*Input, rs []*Rule, opts Options) *Pipeline {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = 100 * time.Millisecond
	}
	p := &Pipeline{opts: opts, buf: buf, inputs: inputs, rules: rs, log: opts.Logger,
		in: make(chan ingest.Message, 4096), flushq: make(chan flushReq), reconf: make(chan reconfReq), byIn: make([][]*Rule, len(inputs))}
	for _, r := range rs {
		p.byIn[r.Input] = append(p.byIn[r.Input], r)
	}
	return p
}

// In is the channel sources send messages to.
func (p *Pipeline) In() chan<- ingest.Message { return p.in }

func ruleScope(name string) string   { return "rule/" + name }
func dedupScope(input string) string { return "mqtt-redelivery/" + input }

// Restore loads the rules' window state and the inputs' redelivery records
// from the buffer. A rule whose saved state no longer fits (its definition
// changed) starts empty, with a warning.
func (p *Pipeline) Restore() error {
	for _, r := range p.rules {
		if err := p.restoreRule(r); err != nil {
			return err
		}
	}
	for _, in := range p.inputs {
		if err := p.restoreInput(in); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pipeline) restoreRule(r *Rule) error {
	if !r.Plan.Windowed() {
		return nil
	}
	kvs, err := p.buf.LoadState(ruleScope(r.Plan.Name()))
	if err != nil {
		return err
	}
	entries := make([]rules.StateEntry, len(kvs))
	for i, kv := range kvs {
		entries[i] = rules.StateEntry{Key: string(kv.Key), Value: kv.Value}
	}
	if err := r.Plan.Restore(entries); err != nil {
		p.log.Warn("rule state partly restored", "rule", r.Plan.Name(), "err", err)
	}
	return nil
}

func (p *Pipeline) restoreInput(in *Input) error {
	kvs, err := p.buf.LoadState(dedupScope(in.Name))
	if err != nil {
		return err
	}
	in.committed = make(map[uint16]uint64, len(kvs))
	for _, kv := range kvs {
		if len(kv.Key) == 2 && len(kv.Value) == 8 {
			in.committed[binary.BigEndian.Uint16(kv.Key)] = binary.BigEndian.Uint64(kv.Value)
		}
	}
	return nil
}

// SessionPresent tells the pipeline whether the broker kept input's session.
// Without a session there is nothing to redeliver, so its record is dropped.
// It is safe to call from the source's goroutine.
func (p *Pipeline) SessionPresent(input int, present bool) {
	if present {
		return
	}
	p.in <- ingest.Message{Input: input, PacketID: 0, Topic: sessionReset}
}

// sessionReset marks a control message on the input channel; "$" topics
// cannot be subscribed to with wildcards, so no broker message collides.
const sessionReset = "$sluice/session-reset"

// Run processes messages until ctx ends, then commits what is pending and
// returns. Sources should stop sending before ctx ends or right after.
func (p *Pipeline) Run(ctx context.Context) error {
	tick := time.NewTicker(p.opts.TickInterval)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	p.lastSave = time.Now()
	p.heartbeat.Store(time.Now().UnixNano())
	for {
		select {
		case m := <-p.in:
			// Take what else is queued without blocking: one wake-up, many
			// messages (counted one by one: a batch from a source holds
			// many, whose memory goes back to it at processBatch).
			for n := p.handle(m); n < 512; {
				select {
				case m := <-p.in:
					n += p.handle(m)
					continue
				default:
				}
				break
			}
			p.processBatch()
		case now := <-tick.C:
			p.heartbeat.Store(now.UnixNano())
			for _, r := range p.rules {
				p.outs = r.Plan.Tick(now, p.outs[:0])
				p.addOutputs(r, p.outs)
			}
			if p.stateDirty() && now.Sub(p.lastSave) >= p.opts.CheckpointInterval {
				p.commit(ctx)
			}
		case <-timer.C:
			armed = false
			p.commit(ctx)
		case req := <-p.reconf:
			req.reply <- p.reconfigure(ctx, req)
		case req := <-p.flushq:
			for _, r := range p.rules {
				if len(req.rules) == 0 || slices.Contains(req.rules, r.Plan.Name()) {
					p.outs = r.Plan.Flush(p.outs[:0])
					p.addOutputs(r, p.outs)
				}
			}
			p.commit(ctx)
			req.reply <- ctx.Err()
		case <-ctx.Done():
			p.drain()
			p.processBatch()
			if names := p.finalFlush.Load(); names != nil {
				for _, r := range p.rules {
					if slices.Contains(*names, r.Plan.Name()) {
						p.outs = r.Plan.Flush(p.outs[:0])
						p.addOutputs(r, p.outs)
					}
				}
			}
			final, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			p.commit(final)
			cancel()
			return nil
		}
		switch {
		case p.waiting >= p.opts.CommitMaxRecords:
			p.commit(ctx)
		case (len(p.acks) > 0 || len(p.entries) > 0 || len(p.positions) > 0) && !armed:
			armed = true
			d := p.opts.CommitInterval - time.Since(p.firstWait)
			timer.Reset(max(d, 0))
		}
	}
}

// FlushOnStop names rules whose open windows Run emits when it stops, after
// the last messages were handled: rules that the next config removes or
// changes cannot carry their windows over. Call it before ending Run's
// context.
func (p *Pipeline) FlushOnStop(rules []string) { p.finalFlush.Store(&rules) }

type reconfReq struct {
	inputs  []*Input
	rules   []*Rule
	flush   []string // rules whose windows are emitted before the swap
	restore []*Rule  // new rules whose saved state is loaded after it
	reply   chan error
}

// Reconfigure swaps in new inputs and rules at a message boundary, without
// stopping: queued messages are handled by the old rules, the windows of the
// rules named in flush are emitted and committed, then the new sets take
// over, and the rules in restore load their saved state. Rules and inputs
// that did not change are passed again as the same objects and keep their
// state. Message.Input indexes inputs: keep an unchanged input at its index.
func (p *Pipeline) Reconfigure(ctx context.Context, inputs []*Input, rules []*Rule, flush []string, restore []*Rule) error {
	reply := make(chan error, 1)
	select {
	case p.reconf <- reconfReq{inputs: inputs, rules: rules, flush: flush, restore: restore, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pipeline) reconfigure(ctx context.Context, req reconfReq) error {
	p.drain()
	p.processBatch()
	p.sets = nil // rebuilt for the new rules at the next batch
	for _, r := range p.rules {
		if slices.Contains(req.flush, r.Plan.Name()) {
			p.outs = r.Plan.Flush(p.outs[:0])
			p.addOutputs(r, p.outs)
		}
	}
	p.commit(ctx)
	p.inputs, p.rules = req.inputs, req.rules
	p.byIn = make([][]*Rule, len(p.inputs))
	for _, r := range p.rules {
		p.byIn[r.Input] = append(p.byIn[r.Input], r)
	}
	for _, in := range p.inputs {
		if in.committed == nil {
			if err := p.restoreInput(in); err != nil {
				return err
			}
		}
	}
	for _, r := range req.restore {
		if err := p.restoreRule(r); err != nil {
			return err
		}
	}
	return nil
}

type flushReq struct {
	rules []string
	reply chan error
}

// Flush closes the open windows of the named rules (every rule when none is
// named) now and commits their outputs with what is pending; it returns when
// the commit is done. Safe to call from any goroutine while Run runs.
func (p *Pipeline) Flush(ctx context.Context, rules ...string) error {
	reply := make(chan error, 1)
	select {
	case p.flushq <- flushReq{rules: rules, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain handles what sources queued before they stopped.
func (p *Pipeline) drain() {
	for {
		select {
		case m := <-p.in:
			p.handle(m)
		default:
			return
		}
	}
}

func (p *Pipeline) stateDirty() bool {
	for _, r := range p.rules {
		if r.Plan.Dirty() {
			return true
		}
	}
	return false
}

// handle takes one message, or a source's batch of them, and returns how
// many it took.
func (p *Pipeline) handle(m ingest.Message) int {
	if b := m.Batch; b != nil {
		for _, it := range b.Items {
			p.handleOne(ingest.Message{Input: m.Input, Topic: it.Topic, Payload: it.Payload, Received: b.Received})
		}
		// Released by the processBatch that takes its last records (an
		// item may end the previous input's batch: not this one's).
		p.held = append(p.held, b)
		return len(b.Items)
	}
	p.handleOne(m)
	return 1
}

func (p *Pipeline) handleOne(m ingest.Message) {
	in := p.inputs[m.Input]
	if m.Topic == sessionReset {
		clear(in.committed)
		in.pending = in.pending[:0]
		in.reset = true
		return
	}
	in.Stats.Messages.Add(1)
	if m.Position != nil {
		if p.positions == nil {
			p.positions = make(map[positionKey]*ingest.Position)
		}
		if len(p.positions) == 0 && p.waiting == 0 && len(p.entries) == 0 {
			p.firstWait = time.Now()
		}
		p.positions[positionKey{m.Position.Scope, string(m.Position.Key)}] = m.Position
		p.waiting++
	}
	if m.Acker != nil {
		if p.waiting == 0 && len(p.entries) == 0 {
			p.firstWait = time.Now()
		}
		p.waiting++
		p.acks = append(p.acks, m.Acker)
		h := messageHash(m.Topic, m.Payload)
		if m.Dup {
			if prev, ok := in.committed[m.PacketID]; ok && prev == h {
				// Committed before a crash whose ack never reached the broker.
				in.Stats.Duplicates.Add(1)
				return
			}
		}
		if m.PacketID != 0 { // 0: not MQTT, nothing is redelivered by packet id
			in.pending = append(in.pending, redelivery{m.PacketID, h})
		}
	}
	if in.MaxPayload > 0 && len(m.Payload) > in.MaxPayload {
		p.deadLetter(in, m, fmt.Sprintf("payload of %d bytes exceeds max_payload %d", len(m.Payload), in.MaxPayload))
		return
	}
	if len(p.batch) > 0 && p.batchIn != m.Input {
		p.processBatch()
	}
	if len(p.batch) == len(p.recs) {
		p.recs = append(p.recs, new(rules.Record))
	}
	rec := p.recs[len(p.batch)]
	rec.Reset()
	rec.Time = m.Received
	rec.Topic = m.Topic
	var err error
	if in.Decoder != nil {
		err = in.Decoder.Decode(m.Payload, rec)
	} else {
		err = in.json.Decode(m.Payload, rec)
	}
	if err == nil && in.Stage != nil {
		err = in.Stage.Apply(rec)
	}
	if err != nil {
		p.deadLetter(in, m, err.Error())
		return
	}
	if len(p.byIn[m.Input]) > 0 {
		p.batch = append(p.batch, rec)
		p.batchIn = m.Input
	}
}

// processBatch gives the batch to the rules of its input and adds their
// outputs to the next commit. It runs before anything else reads the rules'
// state or commits: at the end of each round of messages, and before a
// message of another input.
func (p *Pipeline) processBatch() {
	defer p.releaseHeld()
	if len(p.batch) == 0 {
		return
	}
	if p.sets == nil {
		p.sets = make([]*rules.Set, len(p.inputs))
		for i, rs := range p.byIn {
			plans := make([]*rules.Plan, len(rs))
			for j, r := range rs {
				plans[j] = r.Plan
			}
			p.sets[i] = rules.NewSet(plans...)
		}
	}
	if p.emit == nil {
		p.emit = func(plan int, outs []rules.Output) { p.addOutputs(p.byIn[p.batchIn][plan], outs) }
	}
	p.sets[p.batchIn].ProcessBatch(p.batch, p.emit)
	clear(p.batch) // the records stay in recs; their payloads may go
	p.batch = p.batch[:0]
}

// releaseHeld gives the batches whose records the rules processed back to
// their source.
func (p *Pipeline) releaseHeld() {
	for _, b := range p.held {
		b.Release()
	}
	clear(p.held)
	p.held = p.held[:0]
}

// messageHash identifies a message by topic and payload (the packet id alone
// is reused by the broker once a flow completed). FNV-1a: stable across
// restarts, since the hashes are saved.
func messageHash(topic string, payload []byte) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * prime
	}
	h = (h ^ 0xff) * prime
	for _, c := range payload {
		h = (h ^ uint64(c)) * prime
	}
	return h
}

func (p *Pipeline) deadLetter(in *Input, m ingest.Message, reason string) {
	in.Stats.DeadLetters.Add(1)
	sample := m.Payload
	if len(sample) > 256 {
		sample = sample[:256]
	}
	// The topic may point into a batch's memory, which is reused.
	dl := DeadLetter{Topic: strings.Clone(m.Topic), Reason: reason, Sample: strings.ToValidUTF8(string(sample), "?"), Time: m.Received}
	in.Stats.mu.Lock()
	in.Stats.lastDead = dl
	in.Stats.mu.Unlock()
	if p.opts.OnDeadLetter != nil {
		p.opts.OnDeadLetter(in.Name, dl)
	}
	if p.opts.RouteDeadLetter != nil {
		if e, ok := p.opts.RouteDeadLetter(in.Name, dl); ok {
			if len(p.entries) == 0 && p.waiting == 0 {
				p.firstWait = time.Now()
			}
			p.entries = append(p.entries, e)
		}
	}
	p.log.Debug("dead letter", "input", in.Name, "topic", m.Topic, "reason", reason)
}

func (p *Pipeline) addOutputs(r *Rule, outs []rules.Output) {
	if len(outs) == 0 {
		return
	}
	if len(p.entries) == 0 && p.waiting == 0 {
		p.firstWait = time.Now()
	}
	for i := range outs {
		o := &outs[i]
		p.entries = append(p.entries, buffer.Entry{
			Rule:     o.Rule,
			Key:      o.GroupKey(),
			Priority: r.Priority,
			Routes:   r.To,
			Payload:  o.AppendJSON(nil, p.opts.Tags),
		})
	}
}

// commit saves pending outputs, state and redelivery records in one
// transaction, then releases the inputs it covers. A failed commit (disk full,
// I/O error) is retried with backoff; meanwhile nothing is acked and the
// sources block: that is the backpressure.
func (p *Pipeline) commit(ctx context.Context) {
	c := buffer.Commit{Entries: p.entries}
	for _, r := range p.rules {
		if r.Plan.Dirty() {
			sc := r.Plan.Checkpoint()
			ch := buffer.StateChange{Scope: ruleScope(r.Plan.Name()), Reset: sc.Reset, Puts: make([]buffer.KV, len(sc.Puts))}
			for i, e := range sc.Puts {
				ch.Puts[i] = buffer.KV{Key: []byte(e.Key), Value: e.Value}
			}
			c.State = append(c.State, ch)
		}
	}
	for _, in := range p.inputs {
		if in.reset || len(in.pending) > 0 {
			c.State = append(c.State, buffer.StateChange{Scope: dedupScope(in.Name), Reset: in.reset, Puts: redeliveryKVs(in.pending)})
		}
	}
	for _, pos := range p.positions {
		c.State = append(c.State, buffer.StateChange{Scope: pos.Scope, Puts: []buffer.KV{{Key: pos.Key, Value: pos.Value}}})
	}
	start := time.Now()
	backoff := 10 * time.Millisecond
	for {
		err := p.buf.Commit(&c)
		if err == nil {
			break
		}
		p.Stats.CommitErrors.Add(1)
		if errors.Is(err, buffer.ErrFull) {
			// Backpressure policy: inputs stay unacked until uplinks drain.
			if backoff == 10*time.Millisecond {
				p.log.Warn("buffer full: holding inputs until uplinks drain it", "waiting", p.waiting)
			}
		} else {
			p.log.Error("commit failed; inputs stay unacked and the commit is retried", "err", err, "retry_in", backoff)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			// Shutting down: nothing is acked, so the broker redelivers.
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	p.Stats.CommitNanos.Add(uint64(time.Since(start)))
	p.Stats.Commits.Add(1)
	p.Stats.Outputs.Add(uint64(len(p.entries)))
	if p.opts.OnCommit != nil {
		p.opts.OnCommit(p.entries, p.firstWait, time.Since(start))
	}
	for _, a := range p.acks {
		a.Ack()
	}
	for _, in := range p.inputs {
		for _, rd := range in.pending {
			in.committed[rd.id] = rd.hash
		}
		in.pending = in.pending[:0]
		in.reset = false
	}
	clear(p.acks)
	p.acks = p.acks[:0]
	clear(p.positions)
	clear(p.entries)
	p.entries = p.entries[:0]
	p.waiting = 0
	p.lastSave = time.Now()
}

package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

var quiet = slog.New(slog.DiscardHandler)

// natsServer is an embedded nats-server with JetStream that a test can stop
// and start again on the same port and store.
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	s    *server.Server
}

func newNATSServer(t *testing.T) *natsServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ns := &natsServer{t: t, port: port, dir: t.TempDir()}
	t.Cleanup(ns.stop)
	return ns
}

// startStream returns a running server with the stream T.
func startStream(t *testing.T) *natsServer {
	t.Helper()
	ns := newNATSServer(t)
	ns.start()
	ns.createStream()
	return ns
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

func (ns *natsServer) start() {
	ns.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: ns.port, JetStream: true, StoreDir: ns.dir, NoLog: true, NoSigs: true})
	if err != nil {
		ns.t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		ns.t.Fatal("nats-server not ready within 10s")
	}
	ns.s = s
}

func (ns *natsServer) stop() {
	if ns.s != nil {
		ns.s.Shutdown()
		ns.s.WaitForShutdown()
		ns.s = nil
	}
}

// jetStream connects a client of the test's own and returns its JetStream.
func (ns *natsServer) jetStream() jetstream.JetStream {
	ns.t.Helper()
	nc, err := nats.Connect(ns.url())
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		ns.t.Fatal(err)
	}
	return js
}

// createStream creates the stream T over "t.>", with a dedup window that
// outlasts the test.
func (ns *natsServer) createStream() jetstream.Stream {
	ns.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ns.jetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute, AllowBatchPublish: true})
	if err != nil {
		ns.t.Fatal(err)
	}
	return st
}

func newUplink(t *testing.T, name, url string) *uplink.NATS {
	t.Helper()
	subject, err := uplink.ParseSubject("t.{gateway}.{rule}")
	if err != nil {
		t.Fatal(err)
	}
	up, err := uplink.NewNATS(name, url, uplink.WithGateway("gw"), uplink.WithSubject(subject),
		uplink.WithLogger(quiet), uplink.WithAckTimeout(2*time.Second),
		uplink.WithNATSOptions(nats.CustomReconnectDelay(func(int) time.Duration { return 20 * time.Millisecond })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	return up
}

// acks follows a forwarder's cursor: wait returns when it reached a seq.
type acks struct {
	mu   sync.Mutex
	cond *sync.Cond
	pos  buffer.Position
}

func newAcks() *acks { a := &acks{}; a.cond = sync.NewCond(&a.mu); return a }

func (a *acks) onAck(pos buffer.Position) {
	a.mu.Lock()
	a.pos = pos
	a.cond.Broadcast()
	a.mu.Unlock()
}

// wait blocks until the cursor reached normal (and high, if given) or the
// timeout passed, and reports whether it did.
func (a *acks) wait(normal, high uint64, timeout time.Duration) bool {
	t := time.AfterFunc(timeout, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pos.Normal < normal || a.pos.High < high {
		if time.Now().After(deadline) {
			return false
		}
		a.cond.Wait()
	}
	return true
}

func (a *acks) get() buffer.Position { a.mu.Lock(); defer a.mu.Unlock(); return a.pos }

func openBuffer(t *testing.T, uplinks ...string) *buffer.Buffer {
	t.Helper()
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buf.db"), buffer.Options{Uplinks: uplinks, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	return buf
}

// commit appends n entries; every highEvery'th (if > 0) is an alert. The
// payload carries "values":{"n":1} and padding to about size bytes.
func commit(t *testing.T, buf *buffer.Buffer, n, highEvery, size int) []buffer.Entry {
	t.Helper()
	c := buffer.Commit{Entries: make([]buffer.Entry, n)}
	pad := strings.Repeat("x", max(size-40, 0))
	for i := range c.Entries {
		e := buffer.Entry{Rule: "sum", Key: fmt.Sprintf("dev-%d", i%7), Payload: []byte(`{"values":{"n":1},"pad":"` + pad + `"}`)}
		if highEvery > 0 && i%highEvery == 0 {
			e.Rule, e.Priority = "alert", buffer.PriorityHigh
		}
		c.Entries[i] = e
	}
	if err := buf.Commit(&c); err != nil {
		t.Fatal(err)
	}
	return c.Entries
}

func runForwarder(t *testing.T, f *Forwarder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

type streamMsg struct {
	seq   uint64
	msgID string
	size  int
}

// readStream reads the whole stream back in stream order.
func readStream(t *testing.T, st jetstream.Stream) []streamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]streamMsg, 0, info.State.Msgs)
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(4096, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			var env struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				t.Fatalf("message %s: %v", m.Data(), err)
			}
			out = append(out, streamMsg{seq: env.Seq, msgID: m.Headers().Get(jetstream.MsgIDHeader), size: len(m.Data())})
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestForwarderJetStreamRestart stops the JetStream server while the forwarder
// delivers a stream of commits, commits more while it is down, and starts it
// again: the stream holds every output exactly once, in seq order.
func TestForwarderJetStreamRestart(t *testing.T) {
	ns := startStream(t)
	buf := openBuffer(t, "up")
	up := newUplink(t, "up", ns.url())
	a := newAcks()
	f := NewForwarder(buf, up, WithBatch(200, 0, 0), WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		WithBacklogSplit(-1), WithOnAck(a.onAck), WithForwarderLogger(quiet))
	runForwarder(t, f)

	const total, chunk = 6000, 50
	for n := 0; n < total/3; n += chunk {
		commit(t, buf, chunk, 0, 100)
	}
	if !a.wait(total/6, 0, 20*time.Second) {
		t.Fatalf("cursor at %+v, want %d delivered before the stop", a.get(), total/6)
	}
	ns.stop() // deliveries are in flight: the producer is ahead
	for n := total / 3; n < total; n += chunk {
		commit(t, buf, chunk, 0, 100)
	}
	ns.start()
	if !a.wait(total, 0, 60*time.Second) {
		t.Fatalf("cursor at %+v after the restart, want %d", a.get(), total)
	}
	msgs := readStream(t, ns.createStreamHandle())
	if len(msgs) != total {
		t.Errorf("stream holds %d messages, want %d", len(msgs), total)
	}
	for i, m := range msgs {
		if want := uint64(i + 1); m.seq != want || m.msgID != fmt.Sprintf("gw-%d", want) {
			t.Fatalf("stream message %d: seq %d id %s, want seq %d", i, m.seq, m.msgID, want)
		}
	}
	st := f.Status()
	t.Logf("failures %d, delivered %d, status %+v", f.Failures.Load(), f.Delivered.Load(), st)
	if f.Failures.Load() == 0 {
		t.Error("no delivery failed while the server was down")
	}
	if st.State != StateConnected || st.Lag != 0 || buf.Records() != 0 {
		t.Errorf("state %v lag %d records %d, want connected, 0, 0", st.State, st.Lag, buf.Records())
	}
}

// createStreamHandle returns the existing stream T.
func (ns *natsServer) createStreamHandle() jetstream.Stream {
	ns.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ns.jetStream().Stream(ctx, "T")
	if err != nil {
		ns.t.Fatal(err)
	}
	return st
}

// TestForwarderDeadUplink runs two uplinks over one buffer, one of them
// without a server for the whole test: the live one receives everything and
// the dead one's backlog stays whole in the buffer.
func TestForwarderDeadUplink(t *testing.T) {
	ns := newNATSServer(t)
	ns.start()
	st := ns.createStream()
	dead := newNATSServer(t) // never started

	buf := openBuffer(t, "live", "dead")
	al, ad := newAcks(), newAcks()
	fl := NewForwarder(buf, newUplink(t, "live", ns.url()), WithOnAck(al.onAck), WithForwarderLogger(quiet))
	fd := NewForwarder(buf, newUplink(t, "dead", dead.url()), WithOnAck(ad.onAck), WithForwarderLogger(quiet),
		WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	runForwarder(t, fl)
	runForwarder(t, fd)

	const rounds, per = 20, 250
	for r := 1; r <= rounds; r++ {
		start := time.Now()
		commit(t, buf, per, 10, 100)
		// Each commit reaches the live upstream promptly, whatever the
		// dead uplink does.
		if !al.wait(uint64(r*per), 0, 5*time.Second) {
			t.Fatalf("round %d: live cursor %+v", r, al.get())
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("round %d took %v to reach the live upstream", r, d)
		}
	}
	msgs := readStream(t, st)
	if len(msgs) != rounds*per {
		t.Errorf("live stream holds %d messages, want %d", len(msgs), rounds*per)
	}
	seen := map[uint64]bool{}
	for _, m := range msgs {
		seen[m.seq] = true
	}
	if len(seen) != rounds*per {
		t.Errorf("%d distinct seqs, want %d", len(seen), rounds*per)
	}
	if ad.get() != (buffer.Position{}) {
		t.Errorf("dead uplink acked %+v", ad.get())
	}
	if got := buf.Records(); got != rounds*per {
		t.Errorf("buffer holds %d records, want the dead uplink's %d", got, rounds*per)
	}
	backlog, _, err := buf.Read("dead", buffer.Position{}, rounds*per+1, nil)
	if err != nil || len(backlog) != rounds*per {
		t.Fatalf("dead uplink's backlog: %d entries, %v", len(backlog), err)
	}
	sd := fd.Status()
	if sd.State != StateBackoff || sd.Connected || sd.LastError == "" || sd.Lag != rounds*per || fd.Failures.Load() == 0 {
		t.Errorf("dead uplink status %+v", sd)
	}
	if sl := fl.Status(); sl.State != StateConnected || !sl.Connected || sl.Lag != 0 {
		t.Errorf("live uplink status %+v", sl)
	}
}

// recorder is a NATS uplink that records the size and outcome of each
// delivery, and whether it was connected when the delivery began.
type recorder struct {
	*uplink.NATS
	mu       sync.Mutex
	attempts []attempt
}

type attempt struct {
	entries           int
	failed, connected bool
}

func (r *recorder) Deliver(ctx context.Context, batch []buffer.Entry) error {
	connected := r.Connected()
	err := r.NATS.Deliver(ctx, batch)
	r.mu.Lock()
	r.attempts = append(r.attempts, attempt{len(batch), err != nil, connected})
	r.mu.Unlock()
	return err
}

// TestForwarderRefusedEntryInFastBatch: one entry of a full batch is too
// large for the stream (which takes fast batches). The batch is retried
// whole, one message at a time, so the uplink finds the entry: it is set
// aside after one failed delivery, and every other entry arrives.
func TestForwarderRefusedEntryInFastBatch(t *testing.T) {
	ns := newNATSServer(t)
	ns.start()
	st := smallMsgStream(t, ns, true)
	buf := openBuffer(t, "up")
	c := withTooLarge(1000, "r", 799)
	if err := buf.Commit(&c); err != nil {
		t.Fatal(err)
	}
	a := newAcks()
	up := &recorder{NATS: newUplink(t, "up", ns.url())}
	f := NewForwarder(buf, up, WithOnAck(a.onAck), WithForwarderLogger(quiet), WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	runForwarder(t, f)
	if !a.wait(1000, 0, 30*time.Second) {
		t.Fatalf("cursor %+v, want 1000", a.get())
	}
	if got := len(readStream(t, st)); got != 999 {
		t.Errorf("stream holds %d messages, want 999", got)
	}
	if f.Rejected.Load() != 1 || f.Failures.Load() != 1 {
		t.Errorf("rejected %d, failed deliveries %d: want 1 and 1", f.Rejected.Load(), f.Failures.Load())
	}
}

// TestForwarderOutageDrain: the upstream is unreachable while 100,000 outputs
// (1% alerts) are committed. When it comes back, every output arrives once,
// the outage's alerts before its summaries, live summaries committed during
// the drain arrive while the backlog is still draining, and the drain stays
// within the bandwidth cap.
func TestForwarderOutageDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 outputs")
	}
	ns := startStream(t)
	ns.stop() // the stream survives in the store

	const (
		total    = 100_000
		capBytes = 4 << 20 // bytes/s
	)
	buf := openBuffer(t, "up")
	a := newAcks()
	up := &recorder{NATS: newUplink(t, "up", ns.url())}
	f := NewForwarder(buf, up, WithOnAck(a.onAck), WithForwarderLogger(quiet),
		WithRateLimit(capBytes), WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	runForwarder(t, f)

	var outage []buffer.Entry
	for n := 0; n < total; n += 2000 {
		outage = append(outage, commit(t, buf, 2000, 100, 100)...)
	}
	if st := f.Status(); st.Lag != total || st.State == StateConnected || st.Connected {
		t.Errorf("during the outage: %+v", st)
	}
	highs := 0
	for _, e := range outage {
		if e.Priority == buffer.PriorityHigh {
			highs++
		}
	}

	start := time.Now()
	delivered0 := f.DeliveredBytes.Load()
	ns.start()
	// Live summaries keep coming during the drain, one every 20ms. While
	// deliveries fail, and once more on the first that succeeds, the live
	// lane moves to the newest entry, so what was committed before drains
	// with the backlog; what comes after the last move leads it.
	type live struct {
		seq uint64
		at  time.Time
	}
	var lives []live
	tick := time.NewTicker(20 * time.Millisecond)
	for f.Status().Backlog || a.get().Normal < total {
		<-tick.C
		e := commit(t, buf, 1, 0, 100)
		lives = append(lives, live{e[0].Seq, time.Now()})
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("backlog not drained within 2 minutes: %+v", f.Status())
		}
	}
	tick.Stop()
	last := buf.LastSeq()
	if !a.wait(last, 0, 30*time.Second) {
		t.Fatalf("cursor %+v, want %d", a.get(), last)
	}
	elapsed := time.Since(start)
	bytes := f.DeliveredBytes.Load() - delivered0

	msgs := readStream(t, ns.createStreamHandle())
	if uint64(len(msgs)) != last {
		t.Errorf("stream holds %d messages, want %d", len(msgs), last)
	}
	pos := make(map[uint64]int, len(msgs)) // seq -> stream position
	for i, m := range msgs {
		if _, dup := pos[m.seq]; dup {
			t.Errorf("seq %d twice", m.seq)
		}
		pos[m.seq] = i
	}
	lastHigh, firstNormal := -1, len(msgs)
	for _, e := range outage {
		p, ok := pos[e.Seq]
		if !ok {
			t.Fatalf("seq %d missing", e.Seq)
		}
		if e.Priority == buffer.PriorityHigh {
			lastHigh = max(lastHigh, p)
		} else {
			firstNormal = min(firstNormal, p)
		}
	}
	if lastHigh > firstNormal {
		t.Errorf("an outage alert at stream position %d after a summary at %d", lastHigh, firstNormal)
	}
	// Live entries committed after the live lane's last move, in the first
	// half of what was left of the drain, arrived before the backlog was
	// done: their stream positions precede the last of the outage's entries.
	backlogEnd := 0
	for _, e := range outage {
		backlogEnd = max(backlogEnd, pos[e.Seq])
	}
	liveFrom := f.liveFrom.Load()
	if liveFrom < total {
		t.Errorf("the live lane starts after seq %d, inside the outage's %d entries", liveFrom, total)
	}
	back := -1 // first live entry in the live lane
	for i, l := range lives {
		if l.seq > liveFrom {
			back = i
			break
		}
	}
	early, lateEntries := 0, 0
	if back >= 0 {
		from := lives[back].at
		for _, l := range lives[back:] {
			if l.at.Sub(from) < (elapsed-from.Sub(start))/2 {
				early++
				if pos[l.seq] > backlogEnd {
					lateEntries++
					if lateEntries <= 10 {
						t.Errorf("live seq %d committed %v into the drain arrived after the backlog", l.seq, l.at.Sub(start).Round(time.Millisecond))
					}
				}
			}
		}
	}
	rateGot := float64(bytes) / elapsed.Seconds()
	t.Logf("drain: %d outputs (%d alerts) + %d live in %v: %.0f estimated bytes/s (cap %d), %d live early (%d late) after seq %d, %d failed deliveries, splits %d, resent %d, fast batches %d",
		total, highs, len(lives), elapsed.Round(time.Millisecond), rateGot, capBytes, early, lateEntries, liveFrom, f.Failures.Load(), f.Splits.Load(), f.Resent.Load(), up.FastBatches.Load())
	if burst := capBytes / 5; float64(bytes) > float64(capBytes)*elapsed.Seconds()+float64(burst) {
		t.Errorf("drained %d bytes in %v: above the cap of %d bytes/s", bytes, elapsed, capBytes)
	}
	// The stream allows fast batches: the drain went through them.
	if up.FastBatches.Load() == 0 {
		t.Error("no fast batch delivered")
	}
	// Every attempt made while the link was down after a failed one carried
	// one entry; the one after the first that went was a full batch again.
	up.mu.Lock()
	defer up.mu.Unlock()
	retries, recovered := 0, false
	for i := 1; i < len(up.attempts); i++ {
		prev, cur := up.attempts[i-1], up.attempts[i]
		switch {
		case prev.failed && !cur.connected && cur.entries != 1:
			t.Errorf("attempt %d, made while the link was down after a failed one, carried %d entries, want 1", i, cur.entries)
		case prev.failed && !cur.connected:
			retries++
		case i >= 2 && up.attempts[i-2].failed && !prev.failed:
			recovered = true
			if cur.entries <= 1 {
				t.Errorf("attempt %d after the link came back carried %d entries, want a full batch", i, cur.entries)
			}
		}
	}
	if retries == 0 || !recovered {
		t.Errorf("%d retries after a failure, recovered %v: the outage was not seen", retries, recovered)
	}
	if t.Failed() {
		t.Logf("first deliveries (entries, failed, connected): %v", up.attempts[:min(len(up.attempts), 12)])
	}
	if early == 0 {
		t.Errorf("no live entry was committed during the first half of the drain after the live lane's last move (after seq %d)", liveFrom)
	}
	// The wire bytes are within the estimates the cap counts.
	wire := 0
	for _, m := range msgs {
		wire += m.size
	}
	if uint64(wire) > f.DeliveredBytes.Load() {
		t.Errorf("upstream received %d bytes, more than the %d estimated", wire, f.DeliveredBytes.Load())
	}
}

// TestForwarderSavesItsCursorAtMostEveryAckEvery: under a steady flow of
// small commits (one every 5 ms, as a stateless rule's group commits come)
// the forwarder delivers after each of them but saves its cursor in the
// buffer at most every ackEvery, each save being a transaction with its
// fsyncs; once the flow stops, the last delivery is saved within ackEvery.
func TestForwarderSavesItsCursorAtMostEveryAckEvery(t *testing.T) {
	ns := startStream(t)
	buf := openBuffer(t, "up")
	a := newAcks()
	var saves atomic.Int64
	onAck := func(pos buffer.Position) { saves.Add(1); a.onAck(pos) }
	f := NewForwarder(buf, newUplink(t, "up", ns.url()), WithBacklogSplit(-1), WithOnAck(onAck), WithForwarderLogger(quiet))
	runForwarder(t, f)

	commit(t, buf, 1, 0, 100)
	if !a.wait(1, 0, 10*time.Second) {
		t.Fatalf("cursor at %+v, want 1", a.get())
	}
	saves.Store(0)
	batches0 := f.Batches.Load()
	const commits = 60
	start := time.Now()
	for range commits {
		commit(t, buf, 1, 0, 100)
		time.Sleep(5 * time.Millisecond) // the pace of the flow, not a wait for an event
	}
	flow := time.Since(start)
	if !a.wait(1+commits, 0, 10*time.Second) {
		t.Fatalf("cursor at %+v, want %d", a.get(), 1+commits)
	}
	batches, n := f.Batches.Load()-batches0, saves.Load()
	t.Logf("%d commits in %s: %d deliveries, %d cursor saves", commits, flow.Round(time.Millisecond), batches, n)
	if batches < commits/3 {
		t.Fatalf("%d deliveries for %d commits: the flow was not steady enough to test anything", batches, commits)
	}
	if limit := int64(flow/(100*time.Millisecond)) + 2; n > limit {
		t.Errorf("%d cursor saves over %s, want at most %d (one per 100ms, and the last; ackEvery is %s)", n, flow.Round(time.Millisecond), limit, ackEvery)
	}
	if cur, err := buf.Cursor("up"); err != nil || cur.Normal != 1+commits {
		t.Errorf("saved cursor %+v (%v), want %d", cur, err, 1+commits)
	}
}

// heldUplink acknowledges every delivery at once, but holds the one that
// starts at seq holdFrom until the forwarder stops, and then fails it with
// the context's error, as the real uplinks do: a delivery deterministically
// in flight at the stop, which no real upstream gives on demand.
type heldUplink struct {
	holdFrom uint64
	held     chan struct{} // closed when the held delivery started
}

func (u *heldUplink) Name() string { return "up" }
func (u *heldUplink) Close() error { return nil }
func (u *heldUplink) Deliver(ctx context.Context, b []buffer.Entry) error {
	if b[0].Seq == u.holdFrom {
		close(u.held)
		<-ctx.Done()
		return fmt.Errorf("deliver: %w", ctx.Err())
	}
	return nil
}

// TestForwarderSavesTheCursorWhenStoppedMidDelivery: seq 2 went upstream
// less than ackEvery after seq 1 was saved, so its save waits; the forwarder
// stops while seq 3 is in flight, and seq 2 is saved on the way out.
func TestForwarderSavesTheCursorWhenStoppedMidDelivery(t *testing.T) {
	buf := openBuffer(t, "up")
	up := &heldUplink{holdFrom: 3, held: make(chan struct{})}
	delivered := make(chan uint64, 8)
	f := NewForwarder(buf, up, WithBatch(1, 0, 0), WithBacklogSplit(-1), WithForwarderLogger(quiet),
		WithOnDelivered(func(pos buffer.Position) { delivered <- pos.Normal }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer cancel()
	waitSeq := func(want uint64) {
		t.Helper()
		select {
		case got := <-delivered:
			if got != want {
				t.Fatalf("delivered up to %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing delivered, want up to %d", want)
		}
	}
	commit(t, buf, 1, 0, 100)
	waitSeq(1)
	commit(t, buf, 2, 0, 100) // seq 2 goes at once, seq 3 is held
	waitSeq(2)
	select {
	case <-up.held:
	case <-time.After(10 * time.Second):
		t.Fatal("seq 3 was not delivered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if cur, err := buf.Cursor("up"); err != nil || cur.Normal != 2 {
		t.Errorf("saved cursor %+v (%v) after the stop, want 2: seq 2 was delivered", cur, err)
	}
}

// TestForwarderSavesTheCursorBeforeALinger: two full batches go at once and
// the rest of the entries wait for the linger (3 s); what went is saved
// before that wait, not after it.
func TestForwarderSavesTheCursorBeforeALinger(t *testing.T) {
	ns := startStream(t)
	buf := openBuffer(t, "up")
	a := newAcks()
	f := NewForwarder(buf, newUplink(t, "up", ns.url()), WithBatch(10, 0, 3*time.Second), WithBacklogSplit(-1),
		WithOnAck(a.onAck), WithForwarderLogger(quiet))
	runForwarder(t, f)
	commit(t, buf, 25, 0, 100)
	if !a.wait(20, 0, time.Second) {
		t.Fatalf("saved cursor at %+v a second after the entries came, want 20 (the linger lasts 3s)", a.get())
	}
	if !a.wait(25, 0, 10*time.Second) {
		t.Fatalf("saved cursor at %+v, want 25 after the linger", a.get())
	}
}

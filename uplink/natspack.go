package uplink

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"

	"github.com/sluiceio/sluice/buffer"
)

// Pack makes the NATS uplink send many envelopes per message: the body is
// their JSON envelopes one per line (NDJSON), in seq order, optionally
// compressed. It is off by default: one message per entry is what NATS
// consumers expect, and it is the only form in which JetStream drops every
// replay (see NATS).
//
// A packed message carries the headers
//
//	Nats-Msg-Id:      <gateway>-<first seq>-<last seq>
//	Sluice-Records:   the number of envelopes
//	Content-Type:     application/x-ndjson
//	Content-Encoding: zstd or gzip, when compressed
//
// A pack holds entries of one subject only. A batch retried with the same
// entries makes the same packs, which JetStream drops as duplicates; but
// after a crash or a failure the retried batch may hold more entries than
// the first attempt, and its packs then differ from the ones the stream
// already holds: consumers of packed subjects deduplicate by the
// envelopes' seq (at least once, where unpacked JetStream subjects are
// exactly once).
type Pack struct {
	MaxRecords  int    // envelopes per message; 0 or 1: no packing
	MaxBytes    int    // uncompressed body bound (default 512 KiB, under NATS's 1 MiB max_payload)
	Compression string // "", "none", "zstd" or "gzip"
}

// DefaultPackMaxBytes bounds a pack's uncompressed body.
const DefaultPackMaxBytes = 512 << 10

// PackCompressions are the values Pack.Compression takes.
var PackCompressions = []string{"", "none", "zstd", "gzip"}

// WithPack sends many envelopes per NATS message (see Pack).
func WithPack(p Pack) NATSOption { return func(c *natsConfig) { c.pack = p } }

// packer builds the packs of one delivery. Owned by the Deliver goroutine.
type packer struct {
	cfg   Pack
	zstd  *zstd.Encoder
	gzip  *gzip.Writer
	gzbuf bytes.Buffer
	open  map[string]*pack // by subject, during one delivery
	free  []*pack
}

type pack struct {
	rt          *natsRoute
	body        []byte
	first, last uint64
	n           int
}

func newPacker(cfg Pack) (*packer, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultPackMaxBytes
	}
	p := &packer{cfg: cfg, open: make(map[string]*pack)}
	switch cfg.Compression {
	case "", "none":
		p.cfg.Compression = ""
	case "zstd":
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		p.zstd = enc
	case "gzip":
		p.gzip = gzip.NewWriter(nil)
	default:
		return nil, fmt.Errorf("compression %q: want none, zstd or gzip", cfg.Compression)
	}
	return p, nil
}

// body returns the message body of pk, compressed as configured. The
// returned bytes are the message's own: JetStream may send them again
// (retry on no responders) until the ack arrived.
func (p *packer) encode(pk *pack) ([]byte, error) {
	switch {
	case p.zstd != nil:
		return p.zstd.EncodeAll(pk.body, make([]byte, 0, len(pk.body)/4)), nil
	case p.gzip != nil:
		p.gzbuf.Reset()
		p.gzip.Reset(&p.gzbuf)
		if _, err := p.gzip.Write(pk.body); err != nil {
			return nil, err
		}
		if err := p.gzip.Close(); err != nil {
			return nil, err
		}
		return bytes.Clone(p.gzbuf.Bytes()), nil
	}
	return bytes.Clone(pk.body), nil
}

// deliverPacked is deliver for a packing uplink: entries are appended to
// the open pack of their subject, and a pack is published when it is full
// and, for the rest, at the end of the batch. Packs of one subject go out in
// seq order.
func (n *NATS) deliverPacked(ctx context.Context, now time.Time, batch []buffer.Entry) error {
	pk := n.pack
	defer func() {
		for _, p := range pk.open {
			p.body, p.n = p.body[:0], 0
			pk.free = append(pk.free, p)
		}
		clear(pk.open)
	}()
	var st publishState
	for i := range batch {
		e := &batch[i]
		rt, err := n.route(ctx, now, e.Rule)
		if err != nil {
			return n.routeErr(e.Seq, err)
		}
		p := pk.open[rt.subject]
		if p == nil {
			if k := len(pk.free); k > 0 {
				p, pk.free = pk.free[k-1], pk.free[:k-1]
			} else {
				p = &pack{}
			}
			p.rt = rt
			pk.open[rt.subject] = p
		}
		if p.n > 0 && (p.n >= pk.cfg.MaxRecords || len(p.body)+len(n.env.prefix)+21+len(e.Payload) > pk.cfg.MaxBytes) {
			if err := n.publishPack(ctx, p, &st); err != nil {
				return err
			}
		}
		if p.n == 0 {
			p.first = e.Seq
		}
		p.body = n.env.Append(p.body, e)
		p.body = append(p.body, '\n')
		p.last = e.Seq
		p.n++
	}
	for _, p := range pk.open {
		if p.n > 0 {
			if err := n.publishPack(ctx, p, &st); err != nil {
				return err
			}
		}
	}
	return n.finish(ctx, &st)
}

// publishState is what the publishes of one delivery left to wait for.
type publishState struct {
	head     int    // first pending publish not yet acked
	coreN    uint64 // entries sent with core publish
	coreLast uint64 // seq of the last of them
}

// publishPack publishes p and empties it.
func (n *NATS) publishPack(ctx context.Context, p *pack, st *publishState) error {
	data, err := n.pack.encode(p)
	if err != nil {
		return fmt.Errorf("nats %s: pack seq %d-%d: %w", n.name, p.first, p.last, err)
	}
	h := nats.Header{
		"Sluice-Records": []string{strconv.Itoa(p.n)},
		"Content-Type":   []string{"application/x-ndjson"},
	}
	if c := n.pack.cfg.Compression; c != "" {
		h["Content-Encoding"] = []string{c}
	}
	msg := &nats.Msg{Subject: p.rt.subject, Data: data, Header: h}
	first, last, records := p.first, p.last, p.n
	p.body, p.n = p.body[:0], 0
	return n.send(ctx, st, p.rt, msg, n.msgID(first, last), first, last, records)
}

// finish flushes the core publishes of a delivery and awaits the acks of
// its JetStream publishes.
func (n *NATS) finish(ctx context.Context, st *publishState) error {
	if st.coreN > 0 {
		fctx, cancel := n.bound(ctx)
		err := n.nc.FlushWithContext(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("nats %s: flush %d core publishes up to seq %d: %w", n.name, st.coreN, st.coreLast, notConnected(err))
		}
		n.Published.Add(st.coreN)
	}
	for ; st.head < len(n.pending); st.head++ {
		if err := n.await(ctx, n.pending[st.head]); err != nil {
			return err
		}
	}
	return nil
}

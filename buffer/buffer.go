// Package buffer is Sluice's store-and-forward queue: a bbolt file that holds
// every output until each uplink it is routed to has acknowledged it, together
// with the rule states and input positions that produced those outputs.
//
// One Commit is one bbolt transaction, fsynced before it returns: outputs,
// states and positions become durable together or not at all. That is the
// checkpoint contract of DESIGN.md: an input is released (an MQTT ack, a log
// offset) only after the Commit that covers it returned nil.
//
// The queue is bounded by Options.MaxBytes, MaxRecords and MaxAge; what
// happens when it is full is the Policy. High-priority entries (alerts) are
// read before normal ones and dropped after them. Every drop is counted by
// rule, priority and reason.
package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketMeta    = []byte("meta")
	bucketCursors = []byte("cursors")
	bucketState   = []byte("state")
	bucketQueues  = [2][]byte{[]byte("queue"), []byte("queue-high")} // by Priority
	keySeq        = []byte("seq")
	keyCounts     = []byte("counts") // records and bytes per priority
)

// Errors.
var (
	// ErrFull is returned by Commit under the Backpressure policy when the
	// entries do not fit: nothing was saved and the caller keeps its inputs
	// unacknowledged.
	ErrFull = errors.New("buffer full")
	// ErrClosed is returned by operations on a closed buffer.
	ErrClosed = errors.New("buffer closed")
)

// Policy is what Commit does when the buffer is full.
type Policy uint8

const (
	DropOldest   Policy = iota // delete the oldest entries, normal before high (default)
	DropNewest                 // refuse the new entries, normal before high
	Backpressure               // refuse the whole commit with ErrFull
)

// ParsePolicy reads a policy name as it appears in config.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "drop_oldest":
		return DropOldest, nil
	case "drop_newest":
		return DropNewest, nil
	case "backpressure":
		return Backpressure, nil
	}
	return 0, fmt.Errorf("unknown policy %q (drop_oldest, drop_newest, backpressure)", s)
}

func (p Policy) String() string {
	return [...]string{"drop_oldest", "drop_newest", "backpressure"}[p]
}

// Options tune a buffer. The zero value is safe: fsync on every commit, no
// caps.
type Options struct {
	// Uplinks names every uplink that reads the buffer. An entry is deleted
	// once all of those it is routed to have acknowledged it.
	Uplinks []string
	// NoSync skips fsync on commit. Never on by default: a power cut may then
	// lose committed records. For benchmarks of CPU only.
	NoSync bool
	// Timeout bounds the wait for the file lock held by another process.
	Timeout time.Duration

	MaxBytes   int64         // cap on queued bytes (keys and values); 0: none
	MaxRecords int64         // cap on queued entries; 0: none
	MaxAge     time.Duration // entries older than this are dropped; 0: none
	Policy     Policy

	Logger *slog.Logger
	Now    func() time.Time // clock; time.Now when nil
}

// Position is how far an uplink has read or acknowledged, per priority.
type Position struct {
	Normal, High uint64
}

// Buffer is the durable queue. Commit is called by one goroutine (the agent's
// pipeline); Read, Ack and the figures may be called concurrently from the
// uplink forwarders and the metrics reader.
type Buffer struct {
	// mu guards db: every operation holds it for reading; compaction, which
	// swaps the file, holds it for writing.
	mu   sync.RWMutex
	db   *bolt.DB
	path string
	opts Options
	log  *slog.Logger

	wmu     sync.Mutex // serialises write transactions and the counters below
	counts  counts
	lastAge time.Time // last max_age sweep

	seqMu   sync.Mutex
	seq     uint64 // last assigned
	changed chan struct{}

	dropsMu sync.Mutex
	drops   map[DropKey]uint64

	// MovedAside is the path a corrupt file was moved to when Open found
	// one; empty otherwise.
	MovedAside string

	Stats Stats
}

// counts are the queue's records and bytes per priority, kept in the meta
// bucket in the same transactions that change them, so Open is O(1).
type counts struct {
	records [2]int64
	bytes   [2]int64
}

func (c *counts) encode() []byte {
	b := make([]byte, 32)
	for i := 0; i < 2; i++ {
		binary.BigEndian.PutUint64(b[i*16:], uint64(c.records[i]))
		binary.BigEndian.PutUint64(b[i*16+8:], uint64(c.bytes[i]))
	}
	return b
}

func (c *counts) decode(b []byte) {
	if len(b) != 32 {
		return
	}
	for i := 0; i < 2; i++ {
		c.records[i] = int64(binary.BigEndian.Uint64(b[i*16:]))
		c.bytes[i] = int64(binary.BigEndian.Uint64(b[i*16+8:]))
	}
}

// Stats are counters that cost nothing to read.
type Stats struct {
	Commits     atomic.Uint64
	CommitNanos atomic.Uint64 // total time in Commit, fsync included
	Committed   atomic.Uint64 // entries appended
	Deleted     atomic.Uint64 // entries removed after every uplink acked
	Dropped     atomic.Uint64 // entries dropped by caps (see Drops)
	Full        atomic.Uint64 // commits refused with ErrFull
	Compactions atomic.Uint64
}

// DropKey says which entries a drop counter counts.
type DropKey struct {
	Rule     string
	Priority Priority
	Reason   string // "full" or "age"
}

// Open opens (or creates) the buffer file at path. A file that is corrupt,
// truncated or unreadable is moved aside as <path>.corrupt-<time> (never
// deleted), reported in the log and in MovedAside, and a fresh buffer is
// started, so the gateway keeps running.
func Open(path string, opts Options) (*Buffer, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Buffer{path: path, opts: opts, log: opts.Logger, changed: make(chan struct{}), drops: map[DropKey]uint64{}}
	err := b.open()
	if err == nil || !errors.Is(err, errCorrupt) {
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, opts.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("open buffer %s: %w; moving it aside failed: %v", path, err, rerr)
	}
	syncDir(filepath.Dir(path))
	b.log.Error("buffer file is damaged; moved aside and started a fresh buffer", "path", path, "moved_to", aside, "err", err)
	b.MovedAside = aside
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

// ErrCorrupt marks errors that mean the file's content is damaged. Open
// handles it by moving the file aside; a later read that meets damage returns
// it, and the agent restarts the buffer.
var ErrCorrupt = errors.New("damaged buffer file")

var errCorrupt = ErrCorrupt

func (b *Buffer) open() error {
	timeout := b.opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	db, err := openDB(b.path, timeout, b.opts.NoSync)
	if err != nil {
		return err
	}
	b.db = db
	if err := b.load(); err != nil {
		db.Close()
		b.db = nil
		return err
	}
	return nil
}

func openDB(path string, timeout time.Duration, noSync bool) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some damaged files rather than returning an error,
		// and reading a page past the end of a truncated file faults.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("open buffer %s: %v: %w", path, r, errCorrupt)
		}
	}()
	defer setPanicOnFault()()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		NoSync:  noSync,
		// The freelist is saved at each commit: without it bbolt rebuilds it
		// at open by walking every page in a goroutine of its own, which is
		// slow for a large backlog and panics, unrecoverably, on a damaged one.
		NoFreelistSync: false,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("open buffer %s: %w", path, err)
		}
		return nil, fmt.Errorf("open buffer %s: %w: %w", path, err, errCorrupt)
	}
	// Grow the file in small steps: gateways have small disks.
	db.AllocSize = 4 << 20
	return db, nil
}

// load creates the buckets and reads seq and counts, checking on the way
// that the file is as long as its own metadata says and that the queues can
// be walked at their ends.
func (b *Buffer) load() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("open buffer %s: %v: %w", b.path, r, errCorrupt)
		}
	}()
	defer setPanicOnFault()()
	fi, err := os.Stat(b.path)
	if err != nil {
		return fmt.Errorf("open buffer %s: %w", b.path, err)
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("open buffer %s: file is %d bytes, its metadata needs %d (truncated): %w", b.path, fi.Size(), tx.Size(), errCorrupt)
		}
		for _, name := range [][]byte{bucketMeta, bucketCursors, bucketState, bucketQueues[0], bucketQueues[1]} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("open buffer %s: %w: %w", b.path, err, errCorrupt)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySeq); len(v) == 8 {
			b.seq = binary.BigEndian.Uint64(v)
		}
		b.counts.decode(meta.Get(keyCounts))
		if fi.Size() <= fullCheckSize {
			if err := walk(tx); err != nil {
				return fmt.Errorf("open buffer %s: %w: %w", b.path, err, errCorrupt)
			}
		}
		for _, q := range bucketQueues {
			c := tx.Bucket(q).Cursor()
			for _, k := range [][]byte{firstKey(c), lastKey(c)} {
				if k != nil && len(k) != 8 {
					return fmt.Errorf("open buffer %s: bad key in %s: %w", b.path, q, errCorrupt)
				}
			}
			if k := lastKey(c); k != nil && binary.BigEndian.Uint64(k) > b.seq {
				return fmt.Errorf("open buffer %s: entry %d above the saved seq %d: %w", b.path, binary.BigEndian.Uint64(k), b.seq, errCorrupt)
			}
		}
		return nil
	})
}

// fullCheckSize is the largest file whose every page Open reads. Larger
// files get the quick checks only, so that a big backlog opens in
// milliseconds; damage in them shows as read errors later.
const fullCheckSize = 64 << 20

// walk reads every key and value of every bucket, so that a damaged page
// panics here, where it is recovered, and not later.
func walk(tx *bolt.Tx) error {
	var visit func(b *bolt.Bucket) error
	visit = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return visit(nb)
				}
			}
			return nil
		})
	}
	return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return visit(b) })
}

func firstKey(c *bolt.Cursor) []byte { k, _ := c.First(); return k }
func lastKey(c *bolt.Cursor) []byte  { k, _ := c.Last(); return k }

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Close closes the file. Pending commits must have returned.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db = nil
	if err != nil {
		return fmt.Errorf("close buffer %s: %w", b.path, err)
	}
	return nil
}

// Path returns the file's path.
func (b *Buffer) Path() string { return b.path }

// LastSeq returns the sequence number of the newest committed entry.
func (b *Buffer) LastSeq() uint64 {
	b.seqMu.Lock()
	defer b.seqMu.Unlock()
	return b.seq
}

// Changed returns a channel that is closed at the next commit that appends
// entries. Read it before reading entries, so that nothing committed between
// the read and the wait is missed.
func (b *Buffer) Changed() <-chan struct{} {
	b.seqMu.Lock()
	defer b.seqMu.Unlock()
	return b.changed
}

// Commit is what one transaction saves.
type Commit struct {
	// Entries to append; Commit sets their Seq. An entry dropped by the
	// DropNewest policy keeps its Seq but is not stored (upstream sees a gap).
	Entries []Entry
	// State changes of named scopes (a rule's window state, an input's
	// positions), saved in the same transaction as Entries.
	State []StateChange
}

// StateChange replaces or updates the saved state of one scope.
type StateChange struct {
	Scope string
	Reset bool // delete everything saved in the scope before applying Puts
	Puts  []KV // a nil Value deletes the key
}

// KV is one saved key and value.
type KV struct {
	Key   []byte
	Value []byte
}

// Commit appends c.Entries, assigning each the next seq, applies c.State and
// enforces the caps, in one fsynced transaction. When it returns nil
// everything in c is durable; on error nothing in c is saved and no seq is
// consumed. Under Backpressure it returns ErrFull when the entries do not fit.
func (b *Buffer) Commit(c *Commit) error {
	if len(c.Entries) == 0 && len(c.State) == 0 {
		return nil
	}
	start := time.Now()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.seqMu.Lock()
	seq := b.seq
	b.seqMu.Unlock()
	now := b.opts.Now()
	nowMS := now.UnixMilli()

	// bbolt keeps the key and value slices given to Put until the
	// transaction ends, so each entry gets its own bytes: one slab per commit.
	size := 16
	for i := range c.Entries {
		size += 8 + encodedSize(&c.Entries[i])
	}
	slab := make([]byte, 0, size)
	cnt := b.counts
	var drops map[DropKey]uint64
	sweep := b.opts.MaxAge > 0 && now.Sub(b.lastAge) >= time.Second
	next := seq
	err := b.db.Update(func(tx *bolt.Tx) error {
		d := dropper{tx: tx, cnt: &cnt, drops: &drops}
		if sweep {
			if err := d.dropOlder(nowMS - b.opts.MaxAge.Milliseconds()); err != nil {
				return err
			}
		}
		var addRecords, addBytes [2]int64
		for i := range c.Entries {
			e := &c.Entries[i]
			addRecords[e.Priority&1]++
			addBytes[e.Priority&1] += int64(8 + encodedSize(e))
		}
		if b.opts.Policy == Backpressure && b.over(&cnt, addRecords[0]+addRecords[1], addBytes[0]+addBytes[1]) {
			return ErrFull
		}
		queues := [2]*bolt.Bucket{tx.Bucket(bucketQueues[0]), tx.Bucket(bucketQueues[1])}
		for _, q := range queues {
			q.FillPercent = 0.95 // keys only grow: pack pages full
		}
		for i := range c.Entries {
			e := &c.Entries[i]
			next++
			e.Seq = next
			k := len(slab)
			slab = binary.BigEndian.AppendUint64(slab, next)
			v := len(slab)
			slab = encodeEntry(slab, e, nowMS)
			n := int64(len(slab) - k)
			p := e.Priority & 1
			if b.opts.Policy == DropNewest && b.over(&cnt, 1, n) {
				// Room for an alert is made from normal entries; a normal
				// entry that does not fit is refused.
				if p == PriorityHigh {
					if err := d.dropOldestWhile(PriorityNormal, func() bool { return b.over(&cnt, 1, n) }); err != nil {
						return err
					}
				}
				if b.over(&cnt, 1, n) {
					d.count(e.Rule, p, "full")
					continue
				}
			}
			if err := queues[p].Put(slab[k:v:v], slab[v:]); err != nil {
				return err
			}
			cnt.records[p]++
			cnt.bytes[p] += n
		}
		if b.opts.Policy == DropOldest {
			over := func() bool { return b.over(&cnt, 0, 0) }
			if err := d.dropOldestWhile(PriorityNormal, over); err != nil {
				return err
			}
			if err := d.dropOldestWhile(PriorityHigh, over); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if next != seq {
			k := len(slab)
			slab = binary.BigEndian.AppendUint64(slab, next)
			if err := meta.Put(keySeq, slab[k:]); err != nil {
				return err
			}
		}
		if err := meta.Put(keyCounts, cnt.encode()); err != nil {
			return err
		}
		states := tx.Bucket(bucketState)
		for _, sc := range c.State {
			if err := applyState(states, &sc); err != nil {
				return fmt.Errorf("state %s: %w", sc.Scope, err)
			}
		}
		return nil
	})
	if err != nil {
		for i := range c.Entries {
			c.Entries[i].Seq = 0
		}
		if errors.Is(err, ErrFull) {
			b.Stats.Full.Add(1)
			return ErrFull
		}
		return fmt.Errorf("commit to buffer %s: %w", b.path, err)
	}
	if sweep {
		b.lastAge = now
	}
	b.counts = cnt
	b.addDrops(drops)
	b.Stats.Commits.Add(1)
	b.Stats.CommitNanos.Add(uint64(time.Since(start)))
	if n := len(c.Entries); n > 0 {
		b.Stats.Committed.Add(uint64(n))
		b.seqMu.Lock()
		b.seq = next
		close(b.changed)
		b.changed = make(chan struct{})
		b.seqMu.Unlock()
	}
	return nil
}

// over reports whether adding records and bytes would pass a cap.
func (b *Buffer) over(c *counts, records, bytes int64) bool {
	if b.opts.MaxRecords > 0 && c.records[0]+c.records[1]+records > b.opts.MaxRecords {
		return true
	}
	return b.opts.MaxBytes > 0 && c.bytes[0]+c.bytes[1]+bytes > b.opts.MaxBytes
}

// dropper deletes entries inside a write transaction and counts them.
type dropper struct {
	tx      *bolt.Tx
	cnt     *counts
	drops   *map[DropKey]uint64
	deleted int
}

func (d *dropper) count(rule string, p Priority, reason string) {
	if *d.drops == nil {
		*d.drops = map[DropKey]uint64{}
	}
	(*d.drops)[DropKey{Rule: rule, Priority: p, Reason: reason}]++
}

// dropOldestWhile deletes the oldest entries of priority p while cond holds.
func (d *dropper) dropOldestWhile(p Priority, cond func() bool) error {
	return d.deleteFront(p, "full", func(_, _ []byte) bool { return cond() })
}

// dropOlder deletes entries committed before cutoff (unix ms).
func (d *dropper) dropOlder(cutoff int64) error {
	for p := Priority(0); p < 2; p++ {
		err := d.deleteFront(p, "age", func(_, v []byte) bool {
			t, ok := entryTime(v)
			return ok && t < cutoff
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteFront deletes entries of priority p from the oldest on, while keep
// returns true for the next one; the counts are updated before keep is asked
// about the following entry. It collects keys in one cursor pass and deletes
// them afterwards: bbolt cursors re-walk emptied pages after each Delete,
// which would make a long deletion quadratic.
func (d *dropper) deleteFront(p Priority, reason string, keep func(k, v []byte) bool) error {
	q := d.tx.Bucket(bucketQueues[p])
	var keys [][]byte
	c := q.Cursor()
	for k, v := c.First(); k != nil && keep(k, v); k, v = c.Next() {
		keys = append(keys, k) // valid until the transaction ends
		d.cnt.records[p]--
		d.cnt.bytes[p] -= int64(len(k) + len(v))
		if reason != "" {
			rule, _ := entryRule(v)
			d.count(rule, p, reason)
		}
	}
	for _, k := range keys {
		if err := q.Delete(k); err != nil {
			return err
		}
	}
	d.deleted += len(keys)
	return nil
}

func (b *Buffer) addDrops(drops map[DropKey]uint64) {
	if len(drops) == 0 {
		return
	}
	b.dropsMu.Lock()
	defer b.dropsMu.Unlock()
	for k, n := range drops {
		b.drops[k] += n
		b.Stats.Dropped.Add(n)
		b.log.Warn("buffer full: entries dropped", "rule", k.Rule, "priority", k.Priority, "reason", k.Reason, "count", n, "policy", b.opts.Policy)
	}
}

// Drops returns the drop counters since Open.
func (b *Buffer) Drops() map[DropKey]uint64 {
	b.dropsMu.Lock()
	defer b.dropsMu.Unlock()
	m := make(map[DropKey]uint64, len(b.drops))
	for k, v := range b.drops {
		m[k] = v
	}
	return m
}

func applyState(states *bolt.Bucket, sc *StateChange) error {
	name := []byte(sc.Scope)
	if sc.Reset && states.Bucket(name) != nil {
		if err := states.DeleteBucket(name); err != nil {
			return err
		}
	}
	if len(sc.Puts) == 0 {
		return nil
	}
	s, err := states.CreateBucketIfNotExists(name)
	if err != nil {
		return err
	}
	// A checkpoint rewrites the pages it touches whole (copy on write), and
	// a rule's groups change together. At bbolt's default of half-full
	// pages it wrote twice the pages its state needs: W1 at 20k wrote
	// 4.1-4.4 MB to storage in a run, 2.7-2.8 MB like this, and a checkpoint
	// of 1,000 groups cost 0.94-1.12 ms of CPU against 0.69-0.74.
	s.FillPercent = 0.95
	for _, kv := range sc.Puts {
		if kv.Value == nil {
			if err := s.Delete(kv.Key); err != nil {
				return err
			}
			continue
		}
		if err := s.Put(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	return nil
}

// LoadState returns every key and value saved in scope, in key order.
func (b *Buffer) LoadState(scope string) ([]KV, error) {
	var kvs []KV
	err := b.view(func(tx *bolt.Tx) error {
		s := tx.Bucket(bucketState).Bucket([]byte(scope))
		if s == nil {
			return nil
		}
		return s.ForEach(func(k, v []byte) error {
			kvs = append(kvs, KV{Key: bytes.Clone(k), Value: bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load state %s from %s: %w", scope, b.path, err)
	}
	return kvs, nil
}

// view runs fn in a read transaction. A damaged page makes bbolt panic;
// that becomes an error wrapping ErrCorrupt instead of a crash.
func (b *Buffer) view(fn func(tx *bolt.Tx) error) (err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v: %w", r, ErrCorrupt)
		}
	}()
	defer setPanicOnFault()()
	return b.db.View(fn)
}

func cursorKey(uplink string, p Priority) []byte {
	if p == PriorityHigh {
		return []byte(uplink + "\x00high")
	}
	return []byte(uplink)
}

func cursorOf(tx *bolt.Tx, uplink string, p Priority) uint64 {
	if v := tx.Bucket(bucketCursors).Get(cursorKey(uplink, p)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Cursor returns what the uplink acknowledged last.
func (b *Buffer) Cursor(uplink string) (Position, error) {
	var pos Position
	err := b.view(func(tx *bolt.Tx) error {
		pos = Position{Normal: cursorOf(tx, uplink, PriorityNormal), High: cursorOf(tx, uplink, PriorityHigh)}
		return nil
	})
	if err != nil {
		return pos, fmt.Errorf("read cursor %s from %s: %w", uplink, b.path, err)
	}
	return pos, nil
}

// Read appends to dst up to max entries routed to uplink after pos: high
// entries first, then normal ones, each in seq order. next is how far it
// looked: entries up to it that are not in the result were routed elsewhere,
// so the uplink acknowledges next once it delivered the result.
func (b *Buffer) Read(uplink string, pos Position, max int, dst []Entry) (entries []Entry, next Position, err error) {
	next = pos
	err = b.view(func(tx *bolt.Tx) error {
		for _, p := range [2]Priority{PriorityHigh, PriorityNormal} {
			after := &next.Normal
			if p == PriorityHigh {
				after = &next.High
			}
			c := tx.Bucket(bucketQueues[p]).Cursor()
			var start [8]byte
			binary.BigEndian.PutUint64(start[:], *after+1)
			for k, v := c.Seek(start[:]); k != nil && len(dst) < max; k, v = c.Next() {
				seq := binary.BigEndian.Uint64(k)
				var e Entry
				if err := decodeEntry(v, &e); err != nil {
					return fmt.Errorf("entry %d: %w", seq, err)
				}
				*after = seq
				if !e.RoutedTo(uplink) {
					continue
				}
				e.Seq = seq
				dst = append(dst, e)
			}
		}
		return nil
	})
	if err != nil {
		return dst, pos, fmt.Errorf("read buffer %s for %s: %w", b.path, uplink, err)
	}
	return dst, next, nil
}

// Ack records that uplink delivered everything up to pos and deletes the
// entries every uplink has now acknowledged.
func (b *Buffer) Ack(uplink string, pos Position) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	cnt := b.counts
	deleted := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		cursors := tx.Bucket(bucketCursors)
		d := dropper{tx: tx, cnt: &cnt}
		for _, p := range [2]Priority{PriorityNormal, PriorityHigh} {
			seq := pos.Normal
			if p == PriorityHigh {
				seq = pos.High
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], seq)
			if err := cursors.Put(cursorKey(uplink, p), v[:]); err != nil {
				return err
			}
			low := seq
			for _, u := range b.opts.Uplinks {
				if u != uplink {
					low = min(low, cursorOf(tx, u, p))
				}
			}
			err := d.deleteFront(p, "", func(k, _ []byte) bool { return binary.BigEndian.Uint64(k) <= low })
			if err != nil {
				return err
			}
		}
		deleted = d.deleted
		if deleted > 0 {
			return tx.Bucket(bucketMeta).Put(keyCounts, cnt.encode())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack %s up to %+v in %s: %w", uplink, pos, b.path, err)
	}
	b.counts = cnt
	b.Stats.Deleted.Add(uint64(deleted))
	return nil
}

// SetUplinks replaces the names of the uplinks that read the buffer (a
// config swap added or removed some). Entries are deleted once all of them
// acknowledged; a removed uplink no longer holds entries back.
func (b *Buffer) SetUplinks(names []string) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.opts.Uplinks = append([]string(nil), names...)
}

// Records returns the number of queued entries.
func (b *Buffer) Records() int64 {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.counts.records[0] + b.counts.records[1]
}

// Bytes returns the bytes of queued entries (keys and values).
func (b *Buffer) Bytes() int64 {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.counts.bytes[0] + b.counts.bytes[1]
}

// OldestAge returns how long ago the oldest queued entry was committed, or 0
// when the queue is empty.
func (b *Buffer) OldestAge() time.Duration {
	oldest := int64(-1)
	b.view(func(tx *bolt.Tx) error {
		for _, q := range bucketQueues {
			if _, v := tx.Bucket(q).Cursor().First(); v != nil {
				if t, ok := entryTime(v); ok && (oldest < 0 || t < oldest) {
					oldest = t
				}
			}
		}
		return nil
	})
	if oldest < 0 {
		return 0
	}
	return b.opts.Now().Sub(time.UnixMilli(oldest))
}

// Lag returns how many seqs the uplink's acknowledged position is behind
// the newest entry.
func (b *Buffer) Lag(uplink string) uint64 {
	pos, err := b.Cursor(uplink)
	if err != nil {
		return 0
	}
	last := b.LastSeq()
	return last - min(last, max(pos.Normal, pos.High))
}

// FileSize returns the size of the file on disk.
func (b *Buffer) FileSize() int64 {
	fi, err := os.Stat(b.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

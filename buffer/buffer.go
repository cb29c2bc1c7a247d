// Package buffer is Sluice's store-and-forward queue: a bbolt file that holds
// every output until each uplink it is routed to has acknowledged it, together
// with the rule states and input positions that produced those outputs.
//
// One Commit is one bbolt transaction, fsynced before it returns: outputs,
// states and positions become durable together or not at all. That is the
// checkpoint contract of DESIGN.md: an input is released (an MQTT ack, a log
// offset) only after the Commit that covers it returned nil.
package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta    = []byte("meta")
	bucketQueue   = []byte("queue")
	bucketCursors = []byte("cursors")
	bucketState   = []byte("state")
	keySeq        = []byte("seq")
)

// ErrClosed is returned by operations on a closed buffer.
var ErrClosed = errors.New("buffer closed")

// Options tune a buffer. The zero value is safe: fsync on every commit.
type Options struct {
	// Uplinks names every uplink that reads the buffer. An entry is deleted
	// once all of those it is routed to have acknowledged it.
	Uplinks []string
	// NoSync skips fsync on commit. Never on by default: a power cut may then
	// lose committed records. For tests and benchmarks of CPU only.
	NoSync bool
	// Timeout bounds the wait for the file lock held by another process.
	Timeout time.Duration
}

// Buffer is the durable queue. Commit is called by one goroutine (the agent's
// pipeline); Read, Ack and Stats may be called concurrently from the uplink
// forwarders and the metrics reader.
type Buffer struct {
	db      *bolt.DB
	path    string
	uplinks []string

	mu      sync.Mutex // guards seq and changed
	seq     uint64     // last assigned
	changed chan struct{}

	records atomic.Int64 // entries in the queue
	Stats   Stats
}

// Stats are counters that cost nothing to read.
type Stats struct {
	Commits   atomic.Uint64
	Committed atomic.Uint64 // entries appended
	Deleted   atomic.Uint64 // entries removed after every uplink acked
}

// Open opens (or creates) the buffer file at path.
func Open(path string, opts Options) (*Buffer, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        timeout,
		NoSync:         opts.NoSync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	b := &Buffer{db: db, path: path, uplinks: opts.Uplinks, changed: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketQueue, bucketCursors, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keySeq); len(v) == 8 {
			b.seq = binary.BigEndian.Uint64(v)
		}
		b.records.Store(int64(tx.Bucket(bucketQueue).Stats().KeyN))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	return b, nil
}

// Close closes the file. Pending commits must have returned.
func (b *Buffer) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close buffer %s: %w", b.path, err)
	}
	return nil
}

// Path returns the file's path.
func (b *Buffer) Path() string { return b.path }

// LastSeq returns the sequence number of the newest committed entry.
func (b *Buffer) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// Records returns the number of entries in the queue.
func (b *Buffer) Records() int64 { return b.records.Load() }

// Changed returns a channel that is closed at the next commit that appends
// entries. Read it before reading entries, so that nothing committed between
// the read and the wait is missed.
func (b *Buffer) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Commit is what one transaction saves.
type Commit struct {
	// Entries to append; Commit sets their Seq.
	Entries []Entry
	// State changes of named scopes (a rule's window state, an input's
	// positions), saved in the same transaction as Entries.
	State []StateChange
}

// StateChange replaces or updates the saved state of one scope.
type StateChange struct {
	Scope string
	Reset bool // delete everything saved in the scope before applying Puts
	Puts  []KV
}

// KV is one saved key and value.
type KV struct {
	Key   []byte
	Value []byte
}

// Commit appends c.Entries, assigning each the next seq, and applies c.State,
// in one fsynced transaction. When it returns nil everything in c is durable;
// on error nothing in c is saved and no seq is consumed.
func (b *Buffer) Commit(c *Commit) error {
	if len(c.Entries) == 0 && len(c.State) == 0 {
		return nil
	}
	b.mu.Lock()
	seq := b.seq
	b.mu.Unlock()
	next := seq
	// bbolt keeps the key and value slices given to Put until the
	// transaction ends, so each entry gets its own bytes: one slab per commit.
	size := 16
	for i := range c.Entries {
		size += 8 + encodedSize(&c.Entries[i])
	}
	slab := make([]byte, 0, size)
	err := b.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		q.FillPercent = 0.95 // keys only grow: pack pages full
		slab = slab[:0]
		for i := range c.Entries {
			next++
			c.Entries[i].Seq = next
			k := len(slab)
			slab = binary.BigEndian.AppendUint64(slab, next)
			v := len(slab)
			slab = encodeEntry(slab, &c.Entries[i])
			if err := q.Put(slab[k:v:v], slab[v:]); err != nil {
				return err
			}
		}
		if next != seq {
			k := len(slab)
			slab = binary.BigEndian.AppendUint64(slab, next)
			if err := tx.Bucket(bucketMeta).Put(keySeq, slab[k:]); err != nil {
				return err
			}
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
		return fmt.Errorf("commit to buffer %s: %w", b.path, err)
	}
	b.Stats.Commits.Add(1)
	if n := len(c.Entries); n > 0 {
		b.Stats.Committed.Add(uint64(n))
		b.records.Add(int64(n))
		b.mu.Lock()
		b.seq = next
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
	return nil
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
	err := b.db.View(func(tx *bolt.Tx) error {
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

// Cursor returns the last seq the uplink acknowledged.
func (b *Buffer) Cursor(uplink string) (uint64, error) {
	var c uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		c = cursorOf(tx, uplink)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read cursor %s from %s: %w", uplink, b.path, err)
	}
	return c, nil
}

func cursorOf(tx *bolt.Tx, uplink string) uint64 {
	if v := tx.Bucket(bucketCursors).Get([]byte(uplink)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Read appends to dst up to max entries routed to uplink with a seq above
// after, in seq order. scanned is the highest seq looked at: entries up to it
// that are not in the result were routed elsewhere, so the uplink may
// acknowledge up to scanned once it delivered the result.
func (b *Buffer) Read(uplink string, after uint64, max int, dst []Entry) (entries []Entry, scanned uint64, err error) {
	scanned = after
	err = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		var start [8]byte
		binary.BigEndian.PutUint64(start[:], after+1)
		for k, v := c.Seek(start[:]); k != nil && len(dst) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			var e Entry
			if err := decodeEntry(v, &e); err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			scanned = seq
			if !e.RoutedTo(uplink) {
				continue
			}
			e.Seq = seq
			dst = append(dst, e)
		}
		return nil
	})
	if err != nil {
		return dst, after, fmt.Errorf("read buffer %s for %s: %w", b.path, uplink, err)
	}
	return dst, scanned, nil
}

// Ack records that uplink delivered everything up to seq and deletes the
// entries every uplink has now acknowledged.
func (b *Buffer) Ack(uplink string, seq uint64) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], seq)
		if err := tx.Bucket(bucketCursors).Put([]byte(uplink), v[:]); err != nil {
			return err
		}
		low := seq
		for _, u := range b.uplinks {
			if c := cursorOf(tx, u); c < low {
				low = c
			}
		}
		q := tx.Bucket(bucketQueue)
		c := q.Cursor()
		deleted := 0
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= low; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			deleted++
		}
		b.records.Add(-int64(deleted))
		b.Stats.Deleted.Add(uint64(deleted))
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack %s up to %d in %s: %w", uplink, seq, b.path, err)
	}
	return nil
}

package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/sluiceio/sluice/buffer"
)

// Start chooses where a log file is read from when it has no saved position.
type Start uint8

const (
	// StartBeginning reads the whole file (the default).
	StartBeginning Start = iota
	// StartEnd reads only what is written from now on (from the start of the
	// last, possibly partial, line).
	StartEnd
)

// ParseStart parses "beginning" (or "") and "end".
func ParseStart(s string) (Start, error) {
	switch s {
	case "", "beginning":
		return StartBeginning, nil
	case "end":
		return StartEnd, nil
	}
	return 0, fmt.Errorf("start %q: want beginning or end", s)
}

// LogTailOptions configure a log-file source. Zero values get the defaults
// in brackets.
type LogTailOptions struct {
	Input int      // index stamped on every Message
	Name  string   // input name: positions are saved under LogScope(Name)
	Paths []string // glob patterns (filepath.Match syntax, also in directories)

	// Start applies on the input's first run (nothing saved under its
	// scope) to the files found by the first scan. Files that appear later
	// (a rotation, a new file), or after a restart, are read from the
	// beginning, so nothing written to them is skipped.
	Start Start

	// LoadPositions returns the positions saved under a scope: pass
	// Pipeline.LoadPositions. Nil: no saved positions (every file is new).
	LoadPositions func(scope string) ([]buffer.KV, error)

	// Multiline, when set, is a continuation pattern: a line matching it is
	// appended (after a '\n') to the record before it. A record is emitted
	// when a line that does not match follows, when its file is rotated away,
	// or after MultilineWait without a new line [1s].
	Multiline     string
	MultilineWait time.Duration

	// MaxLineBytes bounds a line (or a joined record) [64 KiB]. A longer one
	// is emitted cut to MaxLineBytes+1 bytes and counted in LongLines: give
	// the pipeline's input MaxPayload = MaxLineBytes and it dead-letters it.
	// The rest of the line is skipped; its offset still covers it.
	MaxLineBytes int

	PollInterval time.Duration // rescan and reread without file events [1s]
	RotateWait   time.Duration // a file rotated away is read until it is this long unchanged [5s]
	Logger       *slog.Logger
}

// LogScope is the position scope of the log input named name.
func LogScope(name string) string { return "log/" + name }

// ErrNoPaths is returned by NewLogTail for options without paths.
var ErrNoPaths = errors.New("log input: no paths")

// compressed names are rotated files that were compressed: never read.
var compressed = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".z"}

const (
	fingerprintMax = 1024     // bytes hashed to tell files apart
	readChunk      = 64 << 10 // bytes read at a time
	cycleLimit     = 1 << 20  // bytes read from one current file before the others get a turn
	posHeader      = 26       // offset(8) fingerprint length(2) fingerprint hash(8) read at (unix ns, 8), then the path
)

// LogTail tails the files matching glob patterns and emits one Message per
// line (or joined multiline record): Topic is the path the file was opened
// under, Payload the line without its newline, and Position the file's
// identity (device and inode) with the offset after the line and the
// fingerprint of the file's first bytes (up to 1 KiB). The source never saves
// a position: the pipeline saves them in the commit that covers the lines,
// and Start resumes from those.
//
// Files are found by glob at start, on fsnotify events in their directories,
// and every PollInterval (the fallback when events are missing: NFS, a full
// inotify queue). A file keeps its identity across renames; one whose first
// bytes changed, or that shrank below the offset read (copytruncate), is read
// again from the start, after the lines not yet read are looked for in a copy
// beside it. A file no longer matched (renamed away, deleted) is drained
// before the files that replaced it are read, and kept open until it has
// been unchanged for RotateWait. Names ending in .gz, .bz2, .xz, .zst, .lz4,
// .zip or .z are never read. A partial line at the end of a file waits for
// its newline (a file rotated away emits it when it is closed).
//
// Patterns should not match the uncompressed copies that copytruncate makes
// (app.log.1): those would be read as new files.
//
// One goroutine, started by Start, does all the work; sending to the out
// channel blocks, which is the backpressure. The counters may be read from
// any goroutine.
type LogTail struct {
	opts  LogTailOptions
	scope string
	cont  *regexp.Regexp
	max   int
	log   *slog.Logger

	// Owned by the loop.
	out     chan<- Message
	files   map[fileID]*tailFile
	order   []*tailFile // open order: older files are read first
	saved   map[fileID]savedPos
	watcher *fsnotify.Watcher
	watched map[string]bool
	buf     []byte
	slab    []byte
	posBuf  []Position
	gen     uint64
	now     time.Time
	fresh   bool // no saved positions at start: the input's first run
	polling bool // tests: no file events, as when inotify is unavailable

	cancel context.CancelFunc
	done   chan struct{}

	Lines       atomic.Uint64 // messages emitted
	Bytes       atomic.Uint64 // bytes read from files
	Opened      atomic.Uint64 // files opened, rotated ones and copies included
	LongLines   atomic.Uint64 // lines or records cut at MaxLineBytes
	Rotations   atomic.Uint64 // files that stopped matching (renamed away, deleted)
	Truncations atomic.Uint64 // files read again from the start (copytruncate, replaced content)
	Resumed     atomic.Uint64 // files resumed from a saved position
	Copies      atomic.Uint64 // copytruncate copies read for the lines not yet read
	Uncovered   atomic.Uint64 // rotated files no position covered (found at start, or rotated away between two scans), read from the start
	Open        atomic.Int64  // files open now
}

type fileID struct{ dev, ino uint64 }

func (id fileID) key() []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, id.dev)
	binary.BigEndian.PutUint64(k[8:], id.ino)
	return k
}

type savedPos struct {
	off    int64
	fpLen  int
	fpHash uint64
	readAt int64 // unix ns when the line was read
	path   string
}

type tailFile struct {
	id      fileID
	key     []byte
	path    string // as opened: the Topic
	f       *os.File
	off     int64 // bytes read
	done    int64 // bytes handed on as lines: the start of carry
	fpLen   int
	fpHash  uint64
	carry   []byte // the partial line after done
	long    bool   // carry was cut at MaxLineBytes
	rec     []byte // pending multiline record
	recEnd  int64
	recAt   time.Time
	hasRec  bool
	rotated bool
	changed time.Time // last growth (rotated files)
	seen    uint64
}

// NewLogTail checks opts and returns a source; Start runs it.
func NewLogTail(opts LogTailOptions) (*LogTail, error) {
	if len(opts.Paths) == 0 {
		return nil, ErrNoPaths
	}
	for _, p := range opts.Paths {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("log input %s: path %q: %w", opts.Name, p, err)
		}
	}
	t := &LogTail{opts: opts, scope: LogScope(opts.Name), max: opts.MaxLineBytes, log: opts.Logger}
	if opts.Multiline != "" {
		re, err := regexp.Compile(opts.Multiline)
		if err != nil {
			return nil, fmt.Errorf("log input %s: multiline: %w", opts.Name, err)
		}
		t.cont = re
	}
	if t.max <= 0 {
		t.max = 64 << 10
	}
	if t.opts.MultilineWait <= 0 {
		t.opts.MultilineWait = time.Second
	}
	if t.opts.PollInterval <= 0 {
		t.opts.PollInterval = time.Second
	}
	if t.opts.RotateWait <= 0 {
		t.opts.RotateWait = 5 * time.Second
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.log = t.log.With("input", opts.Name)
	return t, nil
}

// Start loads the saved positions, opens the files matching now and tails
// them until ctx ends or Close is called, sending to out. It returns an error
// only when the saved positions cannot be loaded; a missing file or
// directory is not an error (it is looked for again).
func (t *LogTail) Start(ctx context.Context, out chan<- Message) error {
	t.out = out
	t.files = make(map[fileID]*tailFile)
	t.watched = make(map[string]bool)
	t.saved = make(map[fileID]savedPos)
	t.buf = make([]byte, readChunk)
	if t.opts.LoadPositions != nil {
		kvs, err := t.opts.LoadPositions(t.scope)
		if err != nil {
			return fmt.Errorf("log input %s: load positions: %w", t.opts.Name, err)
		}
		for _, kv := range kvs {
			if id, sp, ok := decodePosition(kv.Key, kv.Value); ok {
				t.saved[id] = sp
			}
		}
	}
	t.fresh = len(t.saved) == 0
	w, err := fsnotify.NewWatcher()
	if err == nil && t.polling {
		w.Close()
		w, err = nil, errors.New("polling only")
	}
	if err != nil {
		t.log.Warn("log input: no file events; polling only", "err", err, "interval", t.opts.PollInterval)
	}
	t.watcher = w
	t.now = time.Now()
	t.watchDirs()
	t.scan(true)
	t.resumeRenamed()
	t.saved = nil

	ctx, t.cancel = context.WithCancel(ctx)
	t.done = make(chan struct{})
	go t.run(ctx)
	return nil
}

// Close stops the source and waits for its goroutine; lines it read but could
// not send are read again after a restart (their positions were not saved).
func (t *LogTail) Close() {
	if t.cancel == nil {
		return
	}
	t.cancel()
	<-t.done
}

func (t *LogTail) run(ctx context.Context) {
	defer close(t.done)
	defer func() {
		for _, tf := range t.order {
			tf.f.Close()
		}
		t.order, t.files = nil, nil
		t.Open.Store(0)
		if t.watcher != nil {
			t.watcher.Close()
		}
	}()
	poll := time.NewTicker(t.opts.PollInterval)
	defer poll.Stop()
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()

	var events chan fsnotify.Event
	var errs chan error
	if t.watcher != nil {
		events, errs = t.watcher.Events, t.watcher.Errors
	}
	rescan := false
	for {
		t.now = time.Now()
		if rescan {
			t.watchDirs()
			t.scan(false)
			rescan = false
		}
		more, err := t.readAll(ctx)
		if err != nil {
			return // ctx ended while sending
		}
		// Wake for a pending multiline record.
		if d, ok := t.nextDeadline(); ok {
			wait.Reset(max(d, 0))
		} else {
			wait.Stop()
		}
		var idle chan struct{}
		if more {
			idle = make(chan struct{})
			close(idle)
		}
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			rescan = rescan || !ev.Has(fsnotify.Write)
			for n := 0; n < 256; n++ { // take what else is queued: one pass for many events
				select {
				case ev := <-events:
					rescan = rescan || !ev.Has(fsnotify.Write)
					continue
				default:
				}
				break
			}
		case err := <-errs:
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				t.log.Warn("log input: file events", "err", err)
			}
			rescan = true
		case <-poll.C:
			rescan = true
		case <-wait.C:
		case <-idle:
		}
	}
}

// watchDirs adds the directories of the patterns to the watcher (again each
// poll: a directory may appear later).
func (t *LogTail) watchDirs() {
	if t.watcher == nil {
		return
	}
	for _, p := range t.opts.Paths {
		dirs := []string{filepath.Dir(p)}
		if hasMeta(dirs[0]) {
			dirs, _ = filepath.Glob(dirs[0])
		}
		for _, d := range dirs {
			if t.watched[d] {
				continue
			}
			if err := t.watcher.Add(d); err == nil {
				t.watched[d] = true
			}
		}
	}
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

func isCompressed(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, c := range compressed {
		if ext == c {
			return true
		}
	}
	return false
}

// scan globs the patterns, opens files not seen before and marks the files
// that no longer match as rotated.
func (t *LogTail) scan(first bool) {
	t.gen++
	for _, p := range t.opts.Paths {
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			if isCompressed(m) {
				continue
			}
			t.match(m, first)
		}
	}
	for _, tf := range t.order {
		if tf.seen != t.gen && !tf.rotated {
			tf.rotated = true
			tf.changed = t.now
			t.Rotations.Add(1)
		}
	}
}

func (t *LogTail) match(path string, first bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	if id, ok := identity(fi); ok {
		if tf := t.files[id]; tf != nil {
			tf.seen = t.gen
			tf.rotated = false
			return
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.log.Warn("log input: open", "err", err)
		return
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return
	}
	id, ok := identity(fi)
	if !ok || t.files[id] != nil {
		f.Close()
		if tf := t.files[id]; ok && tf != nil {
			tf.seen = t.gen
		}
		return
	}
	tf := &tailFile{id: id, key: id.key(), path: path, f: f, seen: t.gen}
	size := fi.Size()
	if sp, ok := t.saved[id]; ok {
		if sp.off <= size && matches(f, sp.fpLen, sp.fpHash) && sp.fpLen <= int(size) {
			tf.off, tf.done, tf.fpLen, tf.fpHash = sp.off, sp.off, sp.fpLen, sp.fpHash
			t.Resumed.Add(1)
		} else {
			// Replaced or truncated while we were down: what was not read yet
			// may be in a copytruncate copy.
			t.Truncations.Add(1)
			t.adoptCopy(filepath.Dir(path), sp, path)
		}
	} else if first && t.fresh && t.opts.Start == StartEnd {
		tf.off = lineStart(f, size)
		tf.done = tf.off
	} else if !first {
		t.skipped(path, id)
	}
	t.add(tf)
}

// skipped picks up files that were at path only between two scans: a new
// file appeared at path (id), and files may have been created there and
// renamed away since the one read last, when rotations come faster than the
// tailer looks (a busy pipeline holds it back). They are the siblings named
// path plus a suffix, not tracked, modified after the last write to the
// file last read at path; they are read from the start.
func (t *LogTail) skipped(path string, id fileID) {
	var prev *tailFile
	for _, tf := range t.order {
		if tf.path == path && tf.id != id {
			prev = tf // the last added
		}
	}
	if prev == nil {
		return
	}
	pfi, err := prev.f.Stat()
	if err != nil {
		return
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == base || !strings.HasPrefix(e.Name(), base) || isCompressed(e.Name()) {
			continue
		}
		fi, err := e.Info()
		// Strictly after: a copytruncate copy made before that last write
		// holds lines read already. File times come from a coarse clock,
		// so a file written only within the same tick is still missed.
		if err != nil || !fi.ModTime().After(pfi.ModTime()) {
			continue
		}
		sid, ok := identity(fi)
		if !ok || sid == id || t.files[sid] != nil {
			continue
		}
		t.openSibling(filepath.Join(dir, e.Name()), path, sid, nil)
	}
}

func (t *LogTail) add(tf *tailFile) {
	t.files[tf.id] = tf
	t.order = append(t.order, tf)
	t.Open.Add(1)
	t.Opened.Add(1)
}

// LogTailCounters are a LogTail's counters read at one moment (see the
// fields of LogTail).
type LogTailCounters struct {
	Lines, Bytes, Opened, LongLines, Rotations, Truncations, Resumed, Copies, Uncovered uint64
	Open                                                                                int64
}

// Counters reads the counters; it may be called from any goroutine.
func (t *LogTail) Counters() LogTailCounters {
	return LogTailCounters{
		Lines: t.Lines.Load(), Bytes: t.Bytes.Load(), Opened: t.Opened.Load(), LongLines: t.LongLines.Load(),
		Rotations: t.Rotations.Load(), Truncations: t.Truncations.Load(), Resumed: t.Resumed.Load(),
		Copies: t.Copies.Load(), Uncovered: t.Uncovered.Load(), Open: t.Open.Load(),
	}
}

// lineStart returns the offset after the last newline in the last 64 KiB
// before size, or size.
func lineStart(f *os.File, size int64) int64 {
	from := max(size-readChunk, 0)
	b := make([]byte, size-from)
	n, _ := f.ReadAt(b, from)
	if i := bytes.LastIndexByte(b[:n], '\n'); i >= 0 {
		return from + int64(i) + 1
	}
	return size
}

// resumeRenamed opens the files of saved positions that no glob matched at
// start (renamed away by a rotation while the agent was down or before its
// lines were committed), found by inode in the directory they were in, and
// drains them from their saved offsets.
//
// It also reads, from the start, the files beside them that no position
// covers, that were written after the latest saved line was read and whose
// names begin with a saved file's name (app.log.1 beside app.log): files
// created by a rotation and rotated away again before any of their lines
// were committed.
func (t *LogTail) resumeRenamed() {
	byDir := make(map[string][]fileID)
	bases := make(map[string][]string)
	var latest int64
	for id, sp := range t.saved {
		d := filepath.Dir(sp.path)
		byDir[d] = append(byDir[d], id)
		bases[d] = append(bases[d], filepath.Base(sp.path))
		latest = max(latest, sp.readAt)
	}
	for dir, ids := range byDir {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		want := make(map[fileID]bool, len(ids))
		for _, id := range ids {
			want[id] = true
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || isCompressed(e.Name()) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			id, ok := identity(fi)
			if !ok || t.files[id] != nil {
				continue
			}
			if !want[id] {
				if base := prefixOf(e.Name(), bases[dir]); base != "" && fi.ModTime().UnixNano() > latest {
					t.openSibling(filepath.Join(dir, e.Name()), filepath.Join(dir, base), id, ids)
				}
				continue
			}
			sp := t.saved[id]
			f, err := os.Open(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			fi2, err := f.Stat()
			if err != nil || !sameID(fi2, id) {
				f.Close()
				continue
			}
			tf := &tailFile{id: id, key: id.key(), path: sp.path, f: f, rotated: true, changed: t.now, seen: t.gen}
			switch size := fi2.Size(); {
			case sp.off <= size && matches(f, sp.fpLen, sp.fpHash):
				if sp.off == size {
					f.Close() // read to the end before
					continue
				}
				tf.off, tf.done, tf.fpLen, tf.fpHash = sp.off, sp.off, sp.fpLen, sp.fpHash
				t.Resumed.Add(1)
			case prefixOf(e.Name(), bases[dir]) != "" && fi2.ModTime().UnixNano() > latest:
				// Truncated and written again (copytruncate) before it was
				// renamed away: the old lines may be in a copy, the new
				// ones are read from the start.
				t.Truncations.Add(1)
				t.adoptCopy(dir, sp, sp.path)
			default:
				f.Close() // the inode is another file's now
				continue
			}
			t.add(tf)
		}
	}
}

// prefixOf returns the longest of bases that name begins with, or "".
func prefixOf(name string, bases []string) string {
	best := ""
	for _, b := range bases {
		if strings.HasPrefix(name, b) && len(b) > len(best) {
			best = b
		}
	}
	return best
}

// openSibling adds path, a rotated file that no saved position names, as a
// rotated file with messages on topic. When its first bytes are the
// fingerprint of a saved position (it is a copytruncate copy) it is read
// from that position's offset, else from the start.
func (t *LogTail) openSibling(path, topic string, id fileID, saved []fileID) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	fi, err := f.Stat()
	if err != nil || !sameID(fi, id) {
		f.Close()
		return
	}
	tf := &tailFile{id: id, key: id.key(), path: topic, f: f, rotated: true, changed: t.now, seen: t.gen}
	for _, sid := range saved {
		sp := t.saved[sid]
		if sp.fpLen == 0 || int64(sp.fpLen) > fi.Size() || !matches(f, sp.fpLen, sp.fpHash) {
			continue
		}
		if sp.off >= fi.Size() {
			f.Close() // a copy of lines read before
			return
		}
		tf.off, tf.done, tf.fpLen, tf.fpHash = sp.off, sp.off, sp.fpLen, sp.fpHash
		t.add(tf)
		t.Copies.Add(1)
		return
	}
	t.add(tf)
	t.Uncovered.Add(1)
}

func sameID(fi os.FileInfo, id fileID) bool {
	got, ok := identity(fi)
	return ok && got == id
}

// adoptCopy looks in dir for a file not tailed whose first bytes are the
// fingerprint of sp (the copy copytruncate made) and longer than sp.off, and
// adds it as a rotated file read from sp.off. It returns the file or nil.
func (t *LogTail) adoptCopy(dir string, sp savedPos, topic string) *tailFile {
	if sp.fpLen == 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || isCompressed(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < int64(sp.fpLen) {
			continue
		}
		id, ok := identity(fi)
		if !ok || t.files[id] != nil {
			continue
		}
		off := sp.off
		if own, ok := t.saved[id]; ok && own.fpLen == sp.fpLen && own.fpHash == sp.fpHash {
			off = max(off, own.off) // adopted before a restart: resume it
		}
		if fi.Size() <= off {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if fi2, err := f.Stat(); err != nil || !sameID(fi2, id) || !matches(f, sp.fpLen, sp.fpHash) {
			f.Close()
			continue
		}
		tf := &tailFile{id: id, key: id.key(), path: topic, f: f, off: off, done: off,
			fpLen: sp.fpLen, fpHash: sp.fpHash, rotated: true, changed: t.now, seen: t.gen}
		t.add(tf)
		t.Copies.Add(1)
		return tf
	}
	return nil
}

// readAll reads every open file: rotated ones first and to their end, then
// the current ones up to cycleLimit each. more reports that one had more.
// It closes rotated files unchanged for RotateWait and emits multiline
// records that waited MultilineWait.
func (t *LogTail) readAll(ctx context.Context) (more bool, err error) {
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < len(t.order); i++ {
			tf := t.order[i]
			if tf.rotated != (pass == 0) {
				continue
			}
			limit := int64(cycleLimit)
			if tf.rotated {
				limit = 0
			}
			m, grew, err := t.readFile(ctx, tf, limit)
			if err != nil {
				if ctx.Err() != nil {
					return false, err
				}
				t.log.Warn("log input: read", "path", tf.path, "err", err)
				tf.rotated = true
			}
			more = more || m
			if grew {
				tf.changed = t.now
			}
		}
	}
	// Close rotated files that went quiet; emit records that waited enough.
	kept := t.order[:0]
	for _, tf := range t.order {
		if tf.hasRec && t.now.Sub(tf.recAt) >= t.opts.MultilineWait {
			if err := t.emitRec(ctx, tf); err != nil {
				return false, err
			}
		}
		if tf.rotated && t.now.Sub(tf.changed) >= t.opts.RotateWait {
			if err := t.finish(ctx, tf); err != nil {
				return false, err
			}
			continue
		}
		kept = append(kept, tf)
	}
	clear(t.order[len(kept):])
	t.order = kept
	return more, nil
}

// finish emits what a rotated file still holds (its last partial line and
// pending record) and closes it.
func (t *LogTail) finish(ctx context.Context, tf *tailFile) error {
	if len(tf.carry) > 0 || tf.long {
		line := tf.carry
		tf.carry, tf.long = nil, false
		if err := t.line(ctx, tf, line, tf.off); err != nil {
			return err
		}
	}
	if tf.hasRec {
		if err := t.emitRec(ctx, tf); err != nil {
			return err
		}
	}
	tf.f.Close()
	delete(t.files, tf.id)
	t.Open.Add(-1)
	return nil
}

func (t *LogTail) nextDeadline() (time.Duration, bool) {
	var d time.Duration
	ok := false
	for _, tf := range t.order {
		if tf.hasRec {
			left := t.opts.MultilineWait - t.now.Sub(tf.recAt)
			if !ok || left < d {
				d, ok = left, true
			}
		}
	}
	return d, ok
}

// readFile reads tf from its offset to its end (or limit bytes when limit >
// 0), first starting it over if it was truncated or its first bytes changed.
func (t *LogTail) readFile(ctx context.Context, tf *tailFile, limit int64) (more, grew bool, err error) {
	fi, err := tf.f.Stat()
	if err != nil {
		return false, false, err
	}
	size := fi.Size()
	if size < tf.off || (tf.fpLen > 0 && (size < int64(tf.fpLen) || !matches(tf.f, tf.fpLen, tf.fpHash))) {
		if err := t.restart(ctx, tf); err != nil {
			return false, false, err
		}
	}
	if tf.fpLen < fingerprintMax && size > int64(tf.fpLen) {
		n := int(min(size, fingerprintMax))
		if h, ok := prefixHash(tf.f, n); ok { // not when it shrank meanwhile
			tf.fpLen, tf.fpHash = n, h
		}
	}
	var n int64
	for {
		k, rerr := tf.f.ReadAt(t.buf, tf.off)
		if k > 0 {
			grew = true
			base := tf.off
			tf.off += int64(k)
			n += int64(k)
			t.Bytes.Add(uint64(k))
			if err := t.consume(ctx, tf, t.buf[:k], base); err != nil {
				return false, grew, err
			}
		}
		if rerr == io.EOF || k == 0 {
			return false, grew, nil
		}
		if rerr != nil {
			return false, grew, rerr
		}
		if limit > 0 && n >= limit {
			return true, grew, nil
		}
	}
}

// restart starts tf over from offset 0 after its content was truncated or
// replaced. Lines not read yet are read from a copy beside it when there is
// one (copytruncate), before the new content.
func (t *LogTail) restart(ctx context.Context, tf *tailFile) error {
	t.Truncations.Add(1)
	if tf.hasRec {
		if err := t.emitRec(ctx, tf); err != nil {
			return err
		}
	}
	sp := savedPos{off: tf.done, fpLen: tf.fpLen, fpHash: tf.fpHash, path: tf.path}
	tf.off, tf.done, tf.fpLen, tf.fpHash = 0, 0, 0, 0
	tf.carry, tf.long = tf.carry[:0], false
	if c := t.adoptCopy(filepath.Dir(tf.path), sp, tf.path); c != nil {
		if _, _, err := t.readFile(ctx, c, 0); err != nil && ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// consume splits data, read at offset base, into lines.
func (t *LogTail) consume(ctx context.Context, tf *tailFile, data []byte, base int64) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			tf.addCarry(data, t.max)
			return nil
		}
		line := data[:i]
		base += int64(i + 1)
		data = data[i+1:]
		if len(tf.carry) > 0 || tf.long {
			tf.addCarry(line, t.max)
			line = tf.carry
		}
		tf.done = base
		err := t.line(ctx, tf, line, base)
		tf.carry, tf.long = tf.carry[:0], false
		if err != nil {
			return err
		}
	}
	return nil
}

// addCarry keeps at most max+1 bytes of a partial line.
func (tf *tailFile) addCarry(b []byte, limit int) {
	if room := limit + 1 - len(tf.carry); len(b) > room {
		b = b[:max(room, 0)]
		tf.long = true
	}
	tf.carry = append(tf.carry, b...)
}

// line handles one complete line that ends at offset end.
func (t *LogTail) line(ctx context.Context, tf *tailFile, line []byte, end int64) error {
	if len(line) > t.max {
		line = line[:t.max+1]
	} else if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if t.cont == nil {
		if len(line) == 0 {
			return nil
		}
		if len(line) > t.max {
			t.LongLines.Add(1)
		}
		return t.emit(ctx, tf, line, end)
	}
	if tf.hasRec && t.cont.Match(line) {
		if room := t.max + 1 - len(tf.rec); room > 0 {
			tf.rec = append(tf.rec, '\n')
			tf.rec = append(tf.rec, line[:min(len(line), room-1)]...)
		}
		tf.recEnd, tf.recAt = end, t.now
		return nil
	}
	if tf.hasRec {
		if err := t.emitRec(ctx, tf); err != nil {
			return err
		}
	}
	if len(line) == 0 {
		return nil
	}
	tf.rec = append(tf.rec[:0], line...)
	tf.recEnd, tf.recAt, tf.hasRec = end, t.now, true
	return nil
}

func (t *LogTail) emitRec(ctx context.Context, tf *tailFile) error {
	tf.hasRec = false
	if len(tf.rec) > t.max {
		t.LongLines.Add(1)
	}
	return t.emit(ctx, tf, tf.rec, tf.recEnd)
}

// emit sends a copy of line with the position end. The payload is never
// reused (decoders keep strings pointing into it).
func (t *LogTail) emit(ctx context.Context, tf *tailFile, line []byte, end int64) error {
	payload := t.alloc(len(line))
	copy(payload, line)
	v := t.alloc(posHeader + len(tf.path))
	binary.BigEndian.PutUint64(v, uint64(end))
	binary.BigEndian.PutUint16(v[8:], uint16(tf.fpLen))
	binary.BigEndian.PutUint64(v[10:], tf.fpHash)
	binary.BigEndian.PutUint64(v[18:], uint64(t.now.UnixNano()))
	copy(v[posHeader:], tf.path)
	if len(t.posBuf) == 0 {
		t.posBuf = make([]Position, 256)
	}
	pos := &t.posBuf[0]
	t.posBuf = t.posBuf[1:]
	*pos = Position{Scope: t.scope, Key: tf.key, Value: v}
	select {
	case t.out <- Message{Input: t.opts.Input, Topic: tf.path, Payload: payload, Received: t.now, Position: pos}:
		t.Lines.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alloc carves n bytes from a shared slab: one allocation for many lines.
func (t *LogTail) alloc(n int) []byte {
	if n > 4<<10 {
		return make([]byte, n)
	}
	if len(t.slab) < n {
		t.slab = make([]byte, 64<<10)
	}
	b := t.slab[:n:n]
	t.slab = t.slab[n:]
	return b
}

// DecodeLogPosition returns the offset, and the path of the file, of a
// position a LogTail emitted.
func DecodeLogPosition(value []byte) (offset int64, path string, ok bool) {
	if len(value) < posHeader {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(value)), string(value[posHeader:]), true
}

func decodePosition(key, value []byte) (fileID, savedPos, bool) {
	if len(key) != 16 || len(value) < posHeader {
		return fileID{}, savedPos{}, false
	}
	id := fileID{dev: binary.BigEndian.Uint64(key), ino: binary.BigEndian.Uint64(key[8:])}
	sp := savedPos{
		off:    int64(binary.BigEndian.Uint64(value)),
		fpLen:  int(binary.BigEndian.Uint16(value[8:])),
		fpHash: binary.BigEndian.Uint64(value[10:]),
		readAt: int64(binary.BigEndian.Uint64(value[18:])),
		path:   string(value[posHeader:]),
	}
	if sp.off < 0 || sp.fpLen > fingerprintMax {
		return fileID{}, savedPos{}, false
	}
	return id, sp, true
}

// prefixHash is the FNV-1a hash of the first n bytes of f; false when f is
// shorter.
func prefixHash(f *os.File, n int) (uint64, bool) {
	var b [fingerprintMax]byte
	k, _ := f.ReadAt(b[:n], 0)
	if k < n {
		return 0, false
	}
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, c := range b[:n] {
		h = (h ^ uint64(c)) * prime
	}
	return h, true
}

// matches reports whether the first n bytes of f hash to h (always for n = 0).
func matches(f *os.File, n int, h uint64) bool {
	if n == 0 {
		return true
	}
	got, ok := prefixHash(f, n)
	return ok && got == h
}

package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluiceio/sluice/buffer"
)

// committed plays the pipeline's part: the latest position per key.
type committed map[string]buffer.KV

func (c committed) add(m Message) {
	if m.Position != nil {
		c[m.Position.Scope+"\x00"+string(m.Position.Key)] = buffer.KV{Key: m.Position.Key, Value: m.Position.Value}
	}
}

func (c committed) load(scope string) ([]buffer.KV, error) {
	var kvs []buffer.KV
	for k, kv := range c {
		if strings.HasPrefix(k, scope+"\x00") {
			kvs = append(kvs, kv)
		}
	}
	return kvs, nil
}

func startTail(t *testing.T, opts LogTailOptions) (*LogTail, chan Message) {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "app"
	}
	lt, err := NewLogTail(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Message, 64)
	ctx, cancel := context.WithCancel(context.Background())
	if err := lt.Start(ctx, out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); lt.Close() })
	return lt, out
}

// recv returns the next n messages, failing after 10s without them.
func recv(t *testing.T, out <-chan Message, n int) []Message {
	t.Helper()
	ms := make([]Message, 0, n)
	deadline := time.After(10 * time.Second)
	for len(ms) < n {
		select {
		case m := <-out:
			ms = append(ms, m)
		case <-deadline:
			t.Fatalf("got %d of %d messages: %v", len(ms), n, payloads(ms))
		}
	}
	return ms
}

// recvUntil returns the messages before the one whose payload is sentinel:
// a sentinel written last proves that nothing else is coming.
func recvUntil(t *testing.T, out <-chan Message, sentinel string) []Message {
	t.Helper()
	var ms []Message
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-out:
			if string(m.Payload) == sentinel {
				return ms
			}
			ms = append(ms, m)
		case <-deadline:
			t.Fatalf("no %q after %d messages", sentinel, len(ms))
		}
	}
}

func payloads(ms []Message) []string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m.Payload)
	}
	return s
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func lines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s %05d\n", prefix, i)
	}
	return b.String()
}

// checkExactlyOnce fails unless ms holds each line prefix from..to exactly once.
func checkExactlyOnce(t *testing.T, ms []Message, want map[string]int) {
	t.Helper()
	got := make(map[string]int)
	for _, m := range ms {
		got[string(m.Payload)]++
	}
	for line, n := range got {
		if n > 1 {
			t.Errorf("%q read %d times", line, n)
		}
	}
	for prefix, n := range want {
		for i := 0; i < n; i++ {
			line := fmt.Sprintf("%s %05d", prefix, i)
			if got[line] != 1 {
				t.Errorf("%q read %d times", line, got[line])
			}
			delete(got, line)
		}
	}
	for line := range got {
		t.Errorf("unexpected line %q", line)
	}
}

func TestLogTailAppendAndPartialLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "one\r\ntwo\n\nthree\n")
	lt, out := startTail(t, LogTailOptions{Paths: []string{filepath.Join(dir, "*.log")}})
	ms := recv(t, out, 3)
	if got := strings.Join(payloads(ms), ","); got != "one,two,three" {
		t.Fatalf("got %s", got)
	}
	for i, wantOff := range []int64{5, 9, 16} {
		m := ms[i]
		off, p, ok := DecodeLogPosition(m.Position.Value)
		if !ok || off != wantOff || p != path || m.Topic != path || m.Position.Scope != "log/app" || len(m.Position.Key) != 16 {
			t.Errorf("message %d: topic %s scope %s offset %d path %s", i, m.Topic, m.Position.Scope, off, p)
		}
	}
	appendFile(t, path, "four\npar")
	if m := recv(t, out, 1)[0]; string(m.Payload) != "four" {
		t.Fatalf("got %q", m.Payload)
	}
	appendFile(t, path, "tial\nEND\n")
	ms = recvUntil(t, out, "END")
	if got := strings.Join(payloads(ms), ","); got != "partial" {
		t.Fatalf("got %s", got)
	}
	if off, _, _ := DecodeLogPosition(ms[0].Position.Value); off != 29 {
		t.Errorf("offset %d, want 29", off)
	}
	if lt.Lines.Load() != 6 {
		t.Errorf("Lines = %d", lt.Lines.Load())
	}
}

func TestLogTailRenameRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("old", 0, 100))
	lt, out := startTail(t, LogTailOptions{Paths: []string{filepath.Join(dir, "*.log")}})
	ms := recv(t, out, 100)

	// The writer keeps its descriptor across the rename and writes on
	// before it reopens: those lines are in the renamed file only.
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString(lines("old", 100, 150)); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("new", 0, 100)+"END\n")
	rest := recvUntil(t, out, "END")
	// The old file is drained before the new one is read.
	for i, m := range rest {
		if want := i < 50; strings.HasPrefix(string(m.Payload), "old") != want {
			t.Fatalf("message %d is %q: the old file was not drained first", i, m.Payload)
		}
	}
	ms = append(ms, rest...)

	// Lines written to the old file after the switch are still read
	// (within RotateWait).
	if _, err := w.WriteString(lines("old", 150, 160) + "END2\n"); err != nil {
		t.Fatal(err)
	}
	ms = append(ms, recvUntil(t, out, "END2")...)
	checkExactlyOnce(t, ms, map[string]int{"old": 160, "new": 100})
	if lt.Rotations.Load() != 1 {
		t.Errorf("Rotations = %d", lt.Rotations.Load())
	}
	for _, m := range ms {
		if m.Topic != path {
			t.Fatalf("topic %s", m.Topic)
		}
	}
}

func TestLogTailCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("a", 0, 100))
	lt, out := startTail(t, LogTailOptions{Paths: []string{filepath.Join(dir, "*.log")}})
	ms := recv(t, out, 100)

	// copytruncate: copy, then truncate in place; lines written just
	// before may not have been read from the original.
	appendFile(t, path, lines("a", 100, 120))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("b", 0, 30)+"END\n")
	ms = append(ms, recvUntil(t, out, "END")...)
	checkExactlyOnce(t, ms, map[string]int{"a": 120, "b": 30})
	if lt.Truncations.Load() != 1 {
		t.Errorf("Truncations = %d", lt.Truncations.Load())
	}
}

func TestLogTailMultiline(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "ERROR boom\n  at a()\n  at b()\nINFO ok\nWARN x\n\tcaused by y\n")
	_, out := startTail(t, LogTailOptions{Paths: []string{path}, Multiline: `^\s`, MultilineWait: 50 * time.Millisecond})
	ms := recv(t, out, 3)
	want := []string{"ERROR boom\n  at a()\n  at b()", "INFO ok", "WARN x\n\tcaused by y"}
	for i := range want {
		if string(ms[i].Payload) != want[i] {
			t.Errorf("record %d = %q, want %q", i, ms[i].Payload, want[i])
		}
	}
	// A record's position is the end of its last line, not of the line
	// that closed it.
	if off, _, _ := DecodeLogPosition(ms[0].Position.Value); off != int64(len("ERROR boom\n  at a()\n  at b()\n")) {
		t.Errorf("offset %d", off)
	}
	// The last record was emitted after MultilineWait without a next line.
	if off, _, _ := DecodeLogPosition(ms[2].Position.Value); off != 57 {
		t.Errorf("offset %d, want 57", off)
	}
}

func TestLogTailNewFilesAndCompressed(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.log.1.gz", "a.log.2.bz2", "a.log.3.xz", "a.log.4.zst"} {
		appendFile(t, filepath.Join(dir, name), "compressed\n")
	}
	appendFile(t, filepath.Join(dir, "a.log"), "before\n")
	// StartEnd skips what existed at start, never what appears later.
	_, out := startTail(t, LogTailOptions{Paths: []string{filepath.Join(dir, "a.log*")}, Start: StartEnd})
	appendFile(t, filepath.Join(dir, "a.log.5.gz"), "compressed\n")
	appendFile(t, filepath.Join(dir, "a.log.new"), "created 1\ncreated 2\n")
	ms := recv(t, out, 2)
	appendFile(t, filepath.Join(dir, "a.log"), "after\nEND\n")
	ms = append(ms, recvUntil(t, out, "END")...)
	if got := strings.Join(payloads(ms), ","); got != "created 1,created 2,after" {
		t.Fatalf("got %s", got)
	}
}

func TestLogTailRestartFromPositions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("a", 0, 100))
	appendFile(t, path+".9", "rotated before the first run\n")
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path+".9", hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	c := committed{}
	opts := LogTailOptions{Name: "app", Paths: []string{filepath.Join(dir, "*.log")}, LoadPositions: c.load}
	lt, err := NewLogTail(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Message) // unbuffered: what was not received was not processed
	if err := lt.Start(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	ms := recv(t, out, 60)
	for _, m := range ms {
		c.add(m) // "committed"
	}
	lt.Close()
	waitFileClock(t, dir, ms[len(ms)-1])

	// While the agent is down: more lines, then two rename rotations: b's
	// file was never read, so no position covers it.
	appendFile(t, path, lines("a", 100, 140))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("b", 0, 50))
	if err := os.Rename(path+".1", path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("c", 0, 20))

	lt2, out2 := startTail(t, opts)
	rest := recv(t, out2, 80+50+20)
	appendFile(t, path, "END\n")
	rest = append(rest, recvUntil(t, out2, "END")...)
	checkExactlyOnce(t, append(ms, rest...), map[string]int{"a": 140, "b": 50, "c": 20})
	if lt2.Resumed.Load() != 1 || lt2.Uncovered.Load() != 1 {
		t.Errorf("Resumed = %d, Uncovered = %d", lt2.Resumed.Load(), lt2.Uncovered.Load())
	}
	for _, m := range rest {
		if m.Topic != path {
			t.Errorf("topic %s", m.Topic)
		}
	}
}

func TestLogTailRestartAfterCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("a", 0, 100))
	c := committed{}
	opts := LogTailOptions{Name: "app", Paths: []string{filepath.Join(dir, "*.log")}, LoadPositions: c.load}
	lt, err := NewLogTail(opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Message)
	if err := lt.Start(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	ms := recv(t, out, 70)
	for _, m := range ms {
		c.add(m)
	}
	lt.Close()

	// Down: copytruncate, and the new content outgrows the old offset, so
	// only the fingerprint tells that the file changed.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("b", 0, 200))

	lt2, out2 := startTail(t, opts)
	rest := recv(t, out2, 30+200)
	appendFile(t, path, "END\n")
	rest = append(rest, recvUntil(t, out2, "END")...)
	checkExactlyOnce(t, append(ms, rest...), map[string]int{"a": 100, "b": 200})
	if lt2.Copies.Load() != 1 || lt2.Truncations.Load() != 1 {
		t.Errorf("Copies = %d, Truncations = %d", lt2.Copies.Load(), lt2.Truncations.Load())
	}
}

func TestLogTailLongLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	long := strings.Repeat("x", 100)
	appendFile(t, path, "short\n"+long+"\nafter\n"+long[:10])
	lt, out := startTail(t, LogTailOptions{Paths: []string{path}, MaxLineBytes: 16})
	ms := recv(t, out, 3)
	if string(ms[0].Payload) != "short" || string(ms[1].Payload) != long[:17] || string(ms[2].Payload) != "after" {
		t.Fatalf("got %q", payloads(ms))
	}
	// The cut line's position covers the whole line.
	if off, _, _ := DecodeLogPosition(ms[1].Position.Value); off != 107 {
		t.Errorf("offset %d, want 107", off)
	}
	// A partial line that outgrows the limit across reads.
	appendFile(t, path, long+"\nEND\n")
	ms = recvUntil(t, out, "END")
	if len(ms) != 1 || len(ms[0].Payload) != 17 {
		t.Fatalf("got %q", payloads(ms))
	}
	if lt.LongLines.Load() != 2 {
		t.Errorf("LongLines = %d", lt.LongLines.Load())
	}
}

func TestNewLogTailRejects(t *testing.T) {
	if _, err := NewLogTail(LogTailOptions{}); err != ErrNoPaths {
		t.Errorf("no paths: %v", err)
	}
	if _, err := NewLogTail(LogTailOptions{Paths: []string{"/x/["}}); err == nil {
		t.Error("bad pattern accepted")
	}
	if _, err := NewLogTail(LogTailOptions{Paths: []string{"/x"}, Multiline: "("}); err == nil {
		t.Error("bad multiline accepted")
	}
	if _, err := ParseStart("middle"); err == nil {
		t.Error("bad start accepted")
	}
}

// TestLogTailPollOnly runs without file events (no inotify): the poll finds
// the rotation and the new lines.
func TestLogTailPollOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("old", 0, 10))
	lt, err := NewLogTail(LogTailOptions{Name: "app", Paths: []string{filepath.Join(dir, "*.log")}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lt.polling = true
	out := make(chan Message, 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer lt.Close()
	defer cancel()
	if err := lt.Start(ctx, out); err != nil {
		t.Fatal(err)
	}
	ms := recv(t, out, 10)
	appendFile(t, path, lines("old", 10, 20))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("new", 0, 10)+"END\n")
	ms = append(ms, recvUntil(t, out, "END")...)
	checkExactlyOnce(t, ms, map[string]int{"old": 20, "new": 10})
}

// TestLogTailRotationStress writes lines while rotating every 500 lines,
// alternately by rename and by copytruncate, and restarts the source three
// times from the positions of the lines it delivered: every line is read
// exactly once.
func TestLogTailRotationStress(t *testing.T) {
	const total, every = 12000, 500
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	c := committed{}
	opts := LogTailOptions{Name: "app", Paths: []string{filepath.Join(dir, "*.log")}, LoadPositions: c.load}

	appendFile(t, path, "")
	var received atomic.Int64
	progress := make(chan struct{}, 1)
	writerDone := make(chan error, 1)
	start := make(chan struct{})
	go func() {
		<-start
		writerDone <- func() error {
			w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer func() { w.Close() }()
			for i := 0; i < total; i++ {
				if _, err := fmt.Fprintf(w, "l %05d\n", i); err != nil {
					return err
				}
				if i%every != every-1 {
					continue
				}
				// The source may lag by half a file, not by more: a file
				// rotated away before the source read from it is not found
				// (see the LogTail doc).
				for received.Load() < int64(i-every/2) {
					<-progress
				}
				rotated := fmt.Sprintf("%s.%d", path, i/every)
				if (i/every)%2 == 0 { // rename; write a few lines to the old file first
					if err := os.Rename(path, rotated); err != nil {
						return err
					}
					w2, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
					if err != nil {
						return err
					}
					w.Close()
					w = w2
				} else { // copytruncate
					data, err := os.ReadFile(path)
					if err != nil {
						return err
					}
					if err := os.WriteFile(rotated, data, 0o644); err != nil {
						return err
					}
					if err := w.Truncate(0); err != nil {
						return err
					}
				}
			}
			_, err = fmt.Fprintf(w, "END\n")
			return err
		}()
	}()

	var all []Message
	for run := 0; ; run++ {
		lt, err := NewLogTail(opts)
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan Message)
		if err := lt.Start(context.Background(), out); err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			close(start)
		}
		n, done := 0, false
		deadline := time.After(30 * time.Second)
		for !done && (run >= 3 || n < 2000) {
			select {
			case m := <-out:
				if string(m.Payload) == "END" {
					done = true
					break
				}
				c.add(m)
				all = append(all, m)
				n++
				received.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			case <-deadline:
				t.Fatalf("run %d: stuck after %d lines (%d in all)", run, n, len(all))
			}
		}
		lt.Close()
		if done {
			break
		}
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, all, map[string]int{"l": total})
}

// waitFileClock waits until files written now are dated after m was read:
// the kernel dates files by a coarse clock that can lag time.Now by a tick,
// and a restart takes longer than that in practice.
func waitFileClock(t *testing.T, dir string, m Message) {
	t.Helper()
	readAt := time.Unix(0, int64(binary.BigEndian.Uint64(m.Position.Value[18:])))
	probe := filepath.Join(dir, "probe")
	for i := 0; ; i++ {
		appendFile(t, probe, "x")
		fi, err := os.Stat(probe)
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().After(readAt) {
			break
		}
		if i > 1000 {
			t.Fatal("file times do not advance")
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
}

package buffer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("SLUICE_BUFFER_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends batches forever and reports each batch on stdout only
// after its Commit returned: "run first last".
func crashChild(path string) {
	b, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "ready")
	w.Flush()
	run := os.Getenv("SLUICE_BUFFER_CRASH_RUN")
	for i := 0; ; i++ {
		n := 1 + i%50
		es := make([]Entry, n)
		for j := range es {
			es[j] = Entry{Rule: "r", Payload: []byte(fmt.Sprintf(`{"run":%s,"batch":%d,"j":%d}`, run, i, j))}
		}
		c := Commit{Entries: es}
		if err := b.Commit(&c); err != nil {
			fmt.Fprintln(w, "error", err)
			w.Flush()
			os.Exit(1)
		}
		fmt.Fprintf(w, "%s %d %d %d\n", run, i, es[0].Seq, es[n-1].Seq)
		w.Flush()
	}
}

// TestSIGKILLDuringCommits kills a committing child process at random
// moments, 50 times: every batch whose Commit returned is present exactly
// once and in order, and seq never repeats or goes back.
func TestSIGKILLDuringCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buf.db")
	type batch struct {
		run, i      int
		first, last uint64
	}
	var reported []batch
	var lastSeq uint64
	for run := 0; run < 50; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SLUICE_BUFFER_CRASH_CHILD="+path, fmt.Sprintf("SLUICE_BUFFER_CRASH_RUN=%d", run))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: child did not start: %q", run, sc.Text())
		}
		killAt := time.Duration(5+mrand.IntN(60)) * time.Millisecond
		timer := time.AfterFunc(killAt, func() { cmd.Process.Signal(syscall.SIGKILL) })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if f[0] == "error" {
				t.Fatalf("run %d: child: %s", run, sc.Text())
			}
			r, _ := strconv.Atoi(f[0])
			i, _ := strconv.Atoi(f[1])
			first, _ := strconv.ParseUint(f[2], 10, 64)
			last, _ := strconv.ParseUint(f[3], 10, 64)
			reported = append(reported, batch{r, i, first, last})
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		timer.Stop()

		b, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("run %d: reopen after SIGKILL: %v", run, err)
		}
		if b.MovedAside != "" {
			t.Fatalf("run %d: file judged damaged after SIGKILL", run)
		}
		all := readAll(t, b)
		b.Close()
		bySeq := make(map[uint64][]byte, len(all))
		for k, e := range all {
			if k > 0 && e.Seq <= all[k-1].Seq {
				t.Fatalf("run %d: seq %d after %d", run, e.Seq, all[k-1].Seq)
			}
			bySeq[e.Seq] = e.Payload
		}
		for _, rb := range reported {
			for s := rb.first; s <= rb.last; s++ {
				want := fmt.Sprintf(`{"run":%d,"batch":%d,"j":%d}`, rb.run, rb.i, s-rb.first)
				if got, ok := bySeq[s]; !ok || string(got) != want {
					t.Fatalf("run %d: committed seq %d is %q, want %q", run, s, got, want)
				}
			}
		}
		if len(all) > 0 {
			if top := all[len(all)-1].Seq; top < lastSeq {
				t.Fatalf("run %d: seq went back from %d to %d", run, lastSeq, top)
			} else {
				lastSeq = top
			}
		}
	}
	if len(reported) < 50 {
		t.Errorf("only %d batches committed over 50 runs: the kills came too early to test anything", len(reported))
	}
	t.Logf("%d batches, last seq %d", len(reported), lastSeq)
}

func TestDamagedFilesAreMovedAside(t *testing.T) {
	valid := func(t *testing.T, path string) {
		b, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			commit(t, b, mkEntries("r", PriorityNormal, 500))
		}
		b.Close()
	}
	cases := map[string]func(t *testing.T, path string){
		"garbage": func(t *testing.T, path string) {
			junk := make([]byte, 256<<10)
			rand.Read(junk)
			os.WriteFile(path, junk, 0o600)
		},
		"truncated": func(t *testing.T, path string) {
			valid(t, path)
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		},
		"zeroed pages": func(t *testing.T, path string) {
			valid(t, path)
			fi, _ := os.Stat(path)
			f, _ := os.OpenFile(path, os.O_RDWR, 0)
			f.WriteAt(make([]byte, fi.Size()-8<<10), 8<<10) // every page after the two meta pages
			f.Close()
		},
		"zero-length": func(t *testing.T, path string) {
			os.WriteFile(path, nil, 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buf.db")
			damage(t, path)
			before, _ := os.ReadFile(path)
			b, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer b.Close()
			if name == "zero-length" {
				// bbolt initialises an empty file: there was nothing to lose.
				if b.MovedAside != "" {
					t.Errorf("an empty file was moved aside")
				}
			} else {
				if b.MovedAside == "" || !strings.HasPrefix(b.MovedAside, path+".corrupt-") {
					t.Fatalf("not moved aside: %q", b.MovedAside)
				}
				aside, err := os.ReadFile(b.MovedAside)
				if err != nil || !bytes.Equal(aside, before) {
					t.Errorf("the moved-aside file differs from the damaged one (%v)", err)
				}
			}
			if err := commit(t, b, mkEntries("r", PriorityNormal, 3)); err != nil || b.LastSeq() != 3 {
				t.Errorf("fresh buffer: %v, last seq %d", err, b.LastSeq())
			}
		})
	}
}

// TestDiskFull fills a small tmpfs: Commit fails with an error, nothing
// committed before is damaged, and commits succeed again once there is room.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a 4 MiB tmpfs and needs root (CI runs as root); run `sudo go test ./buffer -run TestDiskFull`")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	path := filepath.Join(dir, "buf.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1000)
	var committed uint64
	var commitErr error
	for i := 0; i < 1000 && commitErr == nil; i++ {
		es := make([]Entry, 100)
		for j := range es {
			es[j] = Entry{Rule: "r", Payload: payload}
		}
		c := Commit{Entries: es}
		if commitErr = b.Commit(&c); commitErr == nil {
			committed = es[99].Seq
		}
	}
	if commitErr == nil || !errors.Is(commitErr, syscall.ENOSPC) {
		t.Fatalf("filling a 4 MiB disk: %v, want ENOSPC", commitErr)
	}
	if committed == 0 {
		t.Fatal("nothing fitted before the disk was full")
	}
	b.Close()
	b, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen on a full disk: %v", err)
	}
	defer b.Close()
	if b.MovedAside != "" {
		t.Fatal("a full disk damaged the file")
	}
	if got := readAll(t, b); uint64(len(got)) != committed || got[len(got)-1].Seq != committed {
		t.Fatalf("after disk full: %d entries, want %d", len(got), committed)
	}
	// Delivering frees pages for reuse: commits work again.
	if err := b.Ack("u", Position{Normal: committed}); err != nil {
		t.Fatal(err)
	}
	if err := commit(t, b, mkEntries("r", PriorityNormal, 100)); err != nil {
		t.Fatalf("commit after space was freed: %v", err)
	}
}

// TestOpenLargeBacklogIsFast opens a buffer of 1,000,000 records.
func TestOpenLargeBacklogIsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1,000,000-record file (-short)")
	}
	path := filepath.Join(t.TempDir(), "buf.db")
	b, err := Open(path, Options{NoSync: true, Uplinks: []string{"u"}})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("y"), 200)
	es := make([]Entry, 20_000)
	for i := 0; i < 50; i++ {
		for j := range es {
			es[j] = Entry{Rule: "r", Payload: payload}
		}
		if err := commit(t, b, es); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	anonBefore := rssAnon(t)
	start := time.Now()
	b, err = Open(path, Options{Uplinks: []string{"u"}})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Records() != 1_000_000 || b.LastSeq() != 1_000_000 {
		t.Fatalf("records %d last seq %d", b.Records(), b.LastSeq())
	}
	if took > time.Second {
		t.Errorf("open took %v, want under 1s", took)
	}
	got, _, _ := b.Read("u", Position{}, 1000, nil)
	if len(got) != 1000 || got[0].Seq != 1 {
		t.Fatalf("read %d", len(got))
	}
	if grown := rssAnon(t) - anonBefore; grown > 32<<20 {
		t.Errorf("anonymous memory grew by %d MiB opening the backlog", grown>>20)
	}
	t.Logf("open of 1,000,000 records (%d MiB file) took %v", b.FileSize()>>20, took)
}

func rssAnon(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RssAnon:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no RssAnon in /proc/self/status")
	return 0
}

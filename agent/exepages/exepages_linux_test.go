package exepages

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// written lives in .data, the executable's writable mapping: a value
// written at run time must survive Release (dropping that page would
// revert it to the file's 1).
var written = 1

// readSmaps returns this process's /proc/self/smaps, and parsed.
func readSmaps(t *testing.T) ([]byte, []mapping) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseSmaps(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, ms
}

// exeRSS sums the resident kB of this test binary's mappings by
// permissions, from /proc/self/smaps.
func exeRSS(t *testing.T) map[string]int {
	t.Helper()
	b, ms := readSmaps(t)
	code, ok := mappingAt(ms, uint64(reflect.ValueOf(exeRSS).Pointer()))
	exe := code.file
	if !ok {
		t.Fatal("no mapping holds the test's code")
	}
	rss := map[string]int{}
	perms := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if m, ok := parseMapping(line); ok && !strings.HasSuffix(f[0], ":") {
			perms = ""
			if m.file == exe {
				perms = m.perms
			}
		} else if len(f) == 3 && f[0] == "Rss:" && perms != "" {
			kb, _ := strconv.Atoi(f[1])
			rss[perms] += kb
		}
	}
	return rss
}

func TestRelease(t *testing.T) {
	// A GC cycle between the readings would map back pclntab pages (stack
	// scans) and blur the figures.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	written = 42
	exeRSS(t) // map the code of the measurement itself
	before := exeRSS(t)
	if before["r-xp"] < 256 || before["r--p"] < 256 {
		t.Fatalf("before: text %d kB, rodata %d kB resident; want the test binary's start-up pages (at least 256 kB each)", before["r-xp"], before["r--p"])
	}
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t)
	t.Logf("text %d → %d kB, rodata %d → %d kB, data %d → %d kB; process %d → %d kB",
		before["r-xp"], after["r-xp"], before["r--p"], after["r--p"], before["rw-p"], after["rw-p"], st.RSSFrom>>10, st.RSSTo>>10)
	// A PIE build (make test runs this test as one too) has a third
	// read-only mapping: .data.rel.ro, relocated at start, so written.
	skipped := 0
	if buildMode() == "pie" {
		skipped = 1
	}
	if st.Mappings != 2 || st.Skipped != skipped {
		t.Errorf("advised %d mappings, skipped %d; want 2 (text; rodata with pclntab) and %d (build mode %q)", st.Mappings, st.Skipped, skipped, buildMode())
	}
	// The code that runs between Release and the read of smaps (this
	// test, os, strconv, malloc's size tables) is mapped back in 64 KiB
	// fault-around windows: most of a small test binary's text (so text
	// is not checked) and a few hundred kB of its rodata. The agent's own
	// check (TestEndToEnd*) sees its RSS fall by more than half.
	if after["r--p"] > before["r--p"]-128 {
		t.Errorf("rodata: %d kB resident after Release, %d before; want at least 128 kB fewer", after["r--p"], before["r--p"])
	}
	if st.RSSTo > st.RSSFrom-128<<10 {
		t.Errorf("process RSS %d → %d kB in Release; want at least 128 kB fewer", st.RSSFrom>>10, st.RSSTo>>10)
	}
	// Dropping a written page of the writable mapping would show as fewer
	// resident pages there and a variable reverted to the file's value.
	if after["rw-p"] < before["rw-p"] {
		t.Errorf("data: %d kB resident after Release, %d before; the writable mapping must be left alone", after["rw-p"], before["rw-p"])
	}
	if written != 42 {
		t.Errorf("a variable in .data reads %d after Release, want 42", written)
	}
}

// buildMode returns the -buildmode this test binary was built with.
func buildMode() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-buildmode" {
				return s.Value
			}
		}
	}
	return ""
}

func TestParseMapping(t *testing.T) {
	for _, c := range []struct {
		line string
		m    mapping
		ok   bool
	}{
		{"00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{0x400000, 0xa79000, "r-xp", "fe:00 123", false, 0}, true},
		{"00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice (deleted)", mapping{0xa79000, 0x114b000, "r--p", "fe:00 123", false, 0x679000}, true},
		{"0114b000-011b4000 rw-p 00d4b000 fe:00 123 /usr/bin/sluice", mapping{0x114b000, 0x11b4000, "rw-p", "fe:00 123", false, 0xd4b000}, true},
		{"7f00000000-7f00008000 r--s 00000000 103:03 77 /var/lib/sluice/buffer.db", mapping{0x7f00000000, 0x7f00008000, "r--s", "103:03 77", false, 0}, true},
		{"011b4000-031fe000 rw-p 00000000 00:00 0", mapping{0x11b4000, 0x31fe000, "rw-p", "", false, 0}, true},
		{"ffff0000-ffff1000 r-xp 00000000 00:00 0 [vectors]", mapping{0xffff0000, 0xffff1000, "r-xp", "", false, 0}, true},
		{"Rss:                5220 kB", mapping{}, false},
		{"VmFlags: rd ex mr mw me sd", mapping{}, false},
		{"zz-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{}, false},
		{"00a79000-00400000 r-xp 00000000 fe:00 123 /usr/bin/sluice", mapping{}, false},
		{"00400000-00a79000 r-xp", mapping{}, false},
		{"", mapping{}, false},
	} {
		m, ok := parseMapping(c.line)
		if m != c.m || ok != c.ok {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", c.line, m, ok, c.m, c.ok)
		}
	}
	for perms, want := range map[string]bool{"r-xp": true, "r--p": true, "rw-p": false, "r--s": false, "rwxp": false, "---p": false} {
		if got := (mapping{perms: perms}).readOnlyPrivate(); got != want {
			t.Errorf("readOnlyPrivate(%s) = %v, want %v", perms, got, want)
		}
	}
}

func TestMappingAt(t *testing.T) {
	ms, err := parseSmaps([]byte(`00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice
00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice
011b4000-031fe000 rw-p 00000000 00:00 0
`))
	if err != nil || len(ms) != 3 {
		t.Fatalf("parseSmaps: %d mappings, %v; want 3", len(ms), err)
	}
	for addr, want := range map[uint64]uint64{0x400000: 0x400000, 0xa78fff: 0x400000, 0xa79000: 0xa79000, 0x11b4000: 0, 0x3000000: 0, 0x10: 0} {
		m, ok := mappingAt(ms, addr)
		if m.lo != want || ok != (want != 0) {
			t.Errorf("mappingAt(%#x) = %+v, %v; want the one from %#x", addr, m, ok, want)
		}
	}
}

// TestPick picks what Release advises among the executable's mappings as
// a static build, a PIE and a process with a breakpoint show them.
func TestPick(t *testing.T) {
	exe := func(lo, hi uint64, perms string, written bool) mapping {
		return mapping{lo: lo, hi: hi, perms: perms, file: "fe:00 123", written: written}
	}
	other := mapping{lo: 0x7f0000, hi: 0x7f1000, perms: "r--p", file: "fe:00 999"}
	anon := mapping{lo: 0x11b4000, hi: 0x31fe000, perms: "rw-p", written: true}
	text, rodata := exe(0x400000, 0xa79000, "r-xp", false), exe(0xa79000, 0x114b000, "r--p", false)
	relro, data := exe(0x114b000, 0x1170000, "r--p", true), exe(0x1170000, 0x11b4000, "rw-p", true)
	for _, c := range []struct {
		name    string
		ms      []mapping
		release []mapping
		skipped int
	}{
		{"static", []mapping{text, rodata, data, anon, other}, []mapping{text, rodata}, 0},
		{"pie", []mapping{text, rodata, relro, data, anon}, []mapping{text, rodata}, 1},
		{"breakpoint in the text", []mapping{exe(0x400000, 0xa79000, "r-xp", true), rodata, data}, []mapping{rodata}, 1},
		{"nothing clean", []mapping{exe(0x400000, 0xa79000, "r-xp", true), relro, data}, nil, 2},
	} {
		release, skipped := pick(c.ms, "fe:00 123")
		if fmt.Sprint(release) != fmt.Sprint(c.release) || skipped != c.skipped {
			t.Errorf("%s: pick = %+v, %d; want %+v, %d", c.name, release, skipped, c.release, c.skipped)
		}
	}
}

// TestParseSmaps reads which mappings hold written pages: those Release
// must leave alone.
func TestParseSmaps(t *testing.T) {
	// The text of a binary just linked: its pages are the file's, dirty
	// in the page cache until written back.
	smaps := `00400000-00a79000 r-xp 00000000 fe:00 123 /usr/bin/sluice
Size:               6628 kB
Rss:                5220 kB
Private_Dirty:      5220 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
00a79000-0114b000 r--p 00679000 fe:00 123 /usr/bin/sluice
Anonymous:             0 kB
0114b000-01170000 r--p 00d4b000 fe:00 123 /usr/bin/sluice
Anonymous:           148 kB
01170000-011b4000 rw-p 00d70000 fe:00 123 /usr/bin/sluice
Anonymous:             8 kB
031fe000-031ff000 r--p 00e00000 fe:00 123 /usr/bin/sluice
Anonymous:             0 kB
Swap:                  4 kB
031ff000-03200000 r--p 00e01000 fe:00 123 /usr/bin/sluice
Anonymous:             0 kB
Swap:                  0 kB
SwapPss:               0 kB
03200000-03201000 r--p 00e02000 fe:00 123 /usr/bin/sluice
Rss:                   4 kB
011b4000-031fe000 rw-p 00000000 00:00 0
Anonymous:           100 kB
`
	ms, err := parseSmaps([]byte(smaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{0x400000, 0xa79000, "r-xp", "fe:00 123", false, 0},
		{0xa79000, 0x114b000, "r--p", "fe:00 123", false, 0x679000},
		{0x114b000, 0x1170000, "r--p", "fe:00 123", true, 0xd4b000}, // relocated .data.rel.ro of a PIE build
		{0x1170000, 0x11b4000, "rw-p", "fe:00 123", true, 0xd70000},
		{0x31fe000, 0x31ff000, "r--p", "fe:00 123", true, 0xe00000}, // a written page swapped out
		{0x31ff000, 0x3200000, "r--p", "fe:00 123", false, 0xe01000},
		{0x3200000, 0x3201000, "r--p", "fe:00 123", true, 0xe02000}, // no Anonymous line: not known to be clean
		{0x11b4000, 0x31fe000, "rw-p", "", true, 0},
	}
	if len(ms) != len(want) {
		t.Fatalf("%d mappings, want %d: %+v", len(ms), len(want), ms)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, ms[i], want[i])
		}
	}
}

// TestWrittenPrivateMapping checks the kernel's accounting that Release
// relies on, on this system: a page written in a private file mapping that
// is read-only again (as a PIE's relocated data is) shows as written, and
// an untouched one of the same file does not.
func TestWrittenPrivateMapping(t *testing.T) {
	// Two files, so that the kernel cannot merge the two mappings into one.
	mmap := func(name string, prot int) []byte {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, bytes.Repeat([]byte{'F'}, os.Getpagesize()), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := syscall.Mmap(int(f.Fd()), 0, os.Getpagesize(), prot, syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Munmap(b) })
		return b
	}
	written := mmap("written", syscall.PROT_READ|syscall.PROT_WRITE)
	written[0] = 'W'
	if err := syscall.Mprotect(written, syscall.PROT_READ); err != nil {
		t.Fatal(err)
	}
	clean := mmap("clean", syscall.PROT_READ)
	if clean[0] != 'F' { // read: resident
		t.Fatalf("clean mapping reads %q", clean[0])
	}
	_, ms := readSmaps(t)
	find := func(p []byte) mapping {
		addr := uint64(uintptr(unsafe.Pointer(&p[0])))
		for _, m := range ms {
			if m.lo <= addr && addr < m.hi {
				return m
			}
		}
		t.Fatalf("no mapping at %#x", addr)
		return mapping{}
	}
	if m := find(written); m.perms != "r--p" || !m.written {
		t.Errorf("written page's mapping: %+v; want r--p and written", m)
	}
	if m := find(clean); m.perms != "r--p" || m.written {
		t.Errorf("untouched mapping: %+v; want r--p and not written", m)
	}
}

// TestCodeMapping finds this test's code in its own smaps, and refuses
// the same smaps as an emulator could show them: the code's mapping not
// r-xp (qemu-user 7.2), every mapping a page away (qemu-user 7.2 on
// armv7), or no file mapping holding the code.
func TestCodeMapping(t *testing.T) {
	_, ms := readSmaps(t)
	fn := reflect.ValueOf(TestCodeMapping)
	m, err := codeMapping(ms, fn)
	if err != nil {
		t.Fatalf("this process: %v", err)
	}
	if pc := uint64(fn.Pointer()); m.perms != "r-xp" || m.file == "" || pc < m.lo || pc >= m.hi {
		t.Errorf("this process: %+v; want the r-xp file mapping holding %#x", m, pc)
	}
	edit := func(f func(*mapping)) []mapping {
		c := slices.Clone(ms)
		for i := range c {
			f(&c[i])
		}
		return c
	}
	for _, c := range []struct {
		name string
		ms   []mapping
		err  string
	}{
		{"code r--p", edit(func(x *mapping) {
			if x.file == m.file && x.perms == "r-xp" {
				x.perms = "r--p"
			}
		}), "not r-xp"},
		{"a page away", edit(func(x *mapping) { x.lo, x.hi = x.lo+0x1000, x.hi+0x1000 }), "not the executable's bytes"},
		{"code anonymous", edit(func(x *mapping) {
			if x.file == m.file {
				x.file = ""
			}
		}), "no file mapping holds"},
	} {
		if _, err := codeMapping(c.ms, fn); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.err)
		}
	}
}

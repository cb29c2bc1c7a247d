package exepages

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Release unmaps the pages of the running executable's read-only mappings
// that hold nothing but the file's bytes; see the package doc. It fails if
// it finds no such mapping, or if /proc/self/smaps does not look like the
// kernel's account of this process.
func Release() (Stats, error) {
	var st Stats
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	ms, err := parseSmaps(smaps)
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	code := reflect.ValueOf(Release)
	release, skipped, err := plan(ms, uint64(code.Pointer()))
	st.Skipped = skipped
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	if err := codeMatchesFile(ms, code); err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	st.RSSFrom = resident()
	for _, m := range release {
		// A page written between the read of smaps and here (a debugger
		// setting a breakpoint at that moment) would be dropped: a window
		// of microseconds, once per run.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), syscall.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("release executable pages: madvise %x-%x: %w", m.lo, m.hi, errno)
		}
		st.Mappings++
		st.Bytes += int64(m.hi - m.lo)
	}
	st.RSSTo = resident()
	return st, nil
}

// plan returns the mappings to release: the read-only private mappings,
// holding no written page, of the file whose mapping holds the code at pc
// (the executable), and how many of its read-only mappings hold written
// pages.
//
// The executable's device and inode are taken from the same smaps rather
// than from stat(/proc/self/exe): on overlayfs, before Linux 6.8, stat
// reports the overlay's device while the maps show the underlying file's.
//
// The mapping that holds the running code must be r-xp. Under qemu-user the
// smaps are the emulator's account of the guest: qemu 7.2 shows the code as
// r--p, at addresses that do not match the ELF's (0x11000 for a segment
// loaded at 0x10000), and a release there made the selftest fail ("dial
// tcp: bad file descriptor") in 2 of 5 runs. So anything else is refused.
func plan(ms []mapping, pc uint64) (release []mapping, skipped int, err error) {
	code, ok := mappingAt(ms, pc)
	if !ok {
		return nil, 0, errors.New("no file mapping holds the agent's code")
	}
	if code.perms != "r-xp" {
		return nil, 0, fmt.Errorf("the mapping holding the running code is %s, not r-xp: /proc/self/smaps does not describe this process as the kernel runs it (an emulator such as qemu-user?)", code.perms)
	}
	for _, m := range ms {
		if m.file != code.file || !m.readOnlyPrivate() {
			continue
		}
		if m.written {
			skipped++
			continue
		}
		release = append(release, m)
	}
	if len(release) == 0 {
		return nil, skipped, fmt.Errorf("no clean read-only mapping of %s (%d hold written pages)", code.file, skipped)
	}
	return release, skipped, nil
}

// codeMatchesFile checks that smaps places the executable where it is: the
// bytes of fn's code in memory must be the file's at the offset its mapping
// claims. An emulator that shows the mappings a page away (qemu-user 7.2
// does) fails it whatever permissions it prints.
func codeMatchesFile(ms []mapping, fn reflect.Value) error {
	pc := uint64(fn.Pointer())
	m, ok := mappingAt(ms, pc)
	if !ok {
		return errors.New("no file mapping holds the agent's code")
	}
	const n = 64
	if m.hi-pc < n {
		return nil // too near the end of the mapping to compare; nothing seen to be wrong
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer f.Close()
	want := make([]byte, n)
	if _, err := f.ReadAt(want, int64(m.off+pc-m.lo)); err != nil {
		return fmt.Errorf("read the executable at the code's offset: %w", err)
	}
	if got := unsafe.Slice((*byte)(fn.UnsafePointer()), n); !bytes.Equal(got, want) {
		return fmt.Errorf("the code at %#x is not the executable's bytes at offset %#x: /proc/self/smaps does not describe this process as the kernel runs it (an emulator?)", pc, m.off+pc-m.lo)
	}
	return nil
}

// mapping is a mapping of /proc/self/smaps: its header line ("start-end
// perms offset dev inode path") and whether it holds written pages.
type mapping struct {
	lo, hi  uint64
	perms   string
	file    string // "dev inode"; "" for an anonymous mapping
	written bool   // Anonymous or Swap is not 0 kB
	off     uint64 // offset in the file of lo
}

// parseSmaps returns the mappings of a /proc/self/smaps. A mapping without
// an Anonymous line counts as written: what cannot be read is not released.
func parseSmaps(b []byte) ([]mapping, error) {
	var ms []mapping
	var anonSeen []bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if m, ok := parseMapping(line); ok {
			ms = append(ms, m)
			anonSeen = append(anonSeen, false)
			continue
		}
		// A page the process wrote in a private file mapping is a copy of
		// its own: Anonymous while resident, Swap once swapped out (a file's
		// own pages are never swapped, only dropped). (Private_Dirty would
		// not do: it also counts the file's own pages while the page cache
		// has not written them back, as for a binary just linked.)
		key, val, ok := strings.Cut(line, ":")
		if !ok || len(ms) == 0 || (key != "Anonymous" && key != "Swap") {
			continue
		}
		last := len(ms) - 1
		if key == "Anonymous" {
			anonSeen[last] = true
		}
		if kb := strings.TrimSuffix(strings.TrimSpace(val), " kB"); kb != "0" {
			ms[last].written = true
		}
	}
	for i := range ms {
		if !anonSeen[i] {
			ms[i].written = true
		}
	}
	return ms, sc.Err()
}

// parseMapping parses a header line of /proc/self/smaps (the format of
// /proc/self/maps). The fields of a mapping ("Rss:    12 kB") do not parse.
func parseMapping(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	start, end, found := strings.Cut(f[0], "-")
	if !found {
		return mapping{}, false
	}
	lo, err1 := strconv.ParseUint(start, 16, 64)
	hi, err2 := strconv.ParseUint(end, 16, 64)
	off, err3 := strconv.ParseUint(f[2], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || hi <= lo {
		return mapping{}, false
	}
	m := mapping{lo: lo, hi: hi, perms: f[1], off: off}
	if f[4] != "0" {
		m.file = f[3] + " " + f[4]
	}
	return m, true
}

// readOnlyPrivate reports whether the mapping is private and cannot be
// written. An executable is never mapped shared, and a writable mapping's
// pages may be written at any moment.
func (m mapping) readOnlyPrivate() bool { return m.perms == "r-xp" || m.perms == "r--p" }

// mappingAt returns the file mapping that holds addr.
func mappingAt(ms []mapping, addr uint64) (mapping, bool) {
	for _, m := range ms {
		if m.lo <= addr && addr < m.hi && m.file != "" {
			return m, true
		}
	}
	return mapping{}, false
}

// resident returns the process's resident bytes (/proc/self/statm), or 0.
func resident() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

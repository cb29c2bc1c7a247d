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
	code, err := codeMapping(ms, reflect.ValueOf(Release))
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	release, skipped := pick(ms, code.file)
	st.Skipped = skipped
	if len(release) == 0 {
		return st, fmt.Errorf("release executable pages: no clean read-only mapping of %s (%d hold written pages)", code.file, skipped)
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

// codeMapping returns the mapping that holds fn's code, the executable's,
// once it checked that smaps places it as the kernel runs it: the mapping
// is r-xp, and fn's bytes in memory are the file's at the offset the
// mapping claims.
//
// Its device and inode identify the executable's other mappings; they are
// taken from smaps rather than from stat(/proc/self/exe) because on
// overlayfs, before Linux 6.8, stat reports the overlay's device while the
// maps show the underlying file's.
//
// Under qemu-user the smaps are the emulator's account of the guest: qemu
// 7.2 shows the code as r--p, at addresses that do not match the ELF's
// (0x11000 for a segment loaded at 0x10000; the byte check fails there as
// well), and a release there made the selftest fail ("dial tcp: bad file
// descriptor") in 2 of 5 runs.
func codeMapping(ms []mapping, fn reflect.Value) (mapping, error) {
	pc := uint64(fn.Pointer())
	m, ok := mappingAt(ms, pc)
	if !ok {
		return m, errors.New("no file mapping holds the agent's code")
	}
	if m.perms != "r-xp" {
		return m, fmt.Errorf("the mapping holding the running code is %s, not r-xp: /proc/self/smaps does not describe this process as the kernel runs it (an emulator such as qemu-user?)", m.perms)
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return m, err
	}
	defer f.Close()
	off := m.off + pc - m.lo
	want := make([]byte, min(64, m.hi-pc))
	if _, err := f.ReadAt(want, int64(off)); err != nil {
		return m, fmt.Errorf("read the executable at the code's offset %#x: %w", off, err)
	}
	if got := unsafe.Slice((*byte)(fn.UnsafePointer()), len(want)); !bytes.Equal(got, want) {
		return m, fmt.Errorf("the code at %#x is not the executable's bytes at offset %#x: /proc/self/smaps does not describe this process as the kernel runs it (an emulator?)", pc, off)
	}
	return m, nil
}

// pick returns the mappings of file to release, its read-only private
// mappings that hold no written page, and how many of its read-only
// mappings hold written pages.
func pick(ms []mapping, file string) (release []mapping, skipped int) {
	for _, m := range ms {
		if m.file != file || !m.readOnlyPrivate() {
			continue
		}
		if m.written {
			skipped++
			continue
		}
		release = append(release, m)
	}
	return release, skipped
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

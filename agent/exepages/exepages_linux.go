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
)

// Release unmaps the pages of the running executable's read-only mappings;
// see the package doc.
func Release() (Stats, error) {
	var st Stats
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return st, fmt.Errorf("release executable pages: %w", err)
	}
	// The executable is the file whose mapping holds this function's code.
	// Its device and inode are taken from the same maps file rather than
	// from stat(/proc/self/exe): on overlayfs (containers) stat reports the
	// overlay's device while the maps show the underlying file's.
	exe, ok := fileAt(maps, uint64(reflect.ValueOf(Release).Pointer()))
	if !ok {
		return st, errors.New("release executable pages: no file mapping holds the agent's code")
	}
	st.RSSFrom = resident()
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		m, ok := parseMapping(sc.Text())
		if !ok || m.file != exe || !m.readOnlyPrivate() {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), syscall.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("release executable pages: madvise %x-%x: %w", m.lo, m.hi, errno)
		}
		st.Mappings++
		st.Bytes += int64(m.hi - m.lo)
	}
	st.RSSTo = resident()
	return st, nil
}

// mapping is a line of /proc/self/maps: "start-end perms offset dev inode
// path".
type mapping struct {
	lo, hi uint64
	perms  string
	file   string // "dev inode"; "" for an anonymous mapping
}

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
	if err1 != nil || err2 != nil || hi <= lo {
		return mapping{}, false
	}
	m := mapping{lo: lo, hi: hi, perms: f[1]}
	if f[4] != "0" {
		m.file = f[3] + " " + f[4]
	}
	return m, true
}

// readOnlyPrivate reports whether the mapping is private and cannot be
// written: its pages are the file's bytes. A writable private mapping
// (.data) may hold pages the process wrote, which MADV_DONTNEED would
// revert to the file's contents.
func (m mapping) readOnlyPrivate() bool { return m.perms == "r-xp" || m.perms == "r--p" }

// fileAt returns the file ("dev inode") whose mapping holds addr.
func fileAt(maps []byte, addr uint64) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		if m, ok := parseMapping(sc.Text()); ok && m.lo <= addr && addr < m.hi && m.file != "" {
			return m.file, true
		}
	}
	return "", false
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

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Logs configures device log files: the first Devices devices each write
// <Dir>/<device>.log, a line per reading and per event, and the file is
// rotated when it reaches MaxBytes.
type Logs struct {
	Dir      string `yaml:"dir"`
	Devices  int    `yaml:"devices"`
	MaxBytes int64  `yaml:"max_bytes"`
	// Rotate is "rename" (the file is renamed to .1, .1 to .2, ..., and a
	// new file is created: tailers must follow by name) or "copytruncate"
	// (the content is copied to .1 and the file truncated in place: tailers
	// must notice the truncation).
	Rotate string `yaml:"rotate"`
	Keep   int    `yaml:"keep"` // rotated files kept, .1 .. .Keep
}

const (
	defaultLogDevices  = 10
	defaultLogMaxBytes = 1 << 20
	defaultLogKeep     = 3
)

func (l Logs) withDefaults() Logs {
	if l.Devices == 0 {
		l.Devices = defaultLogDevices
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = defaultLogMaxBytes
	}
	if l.Rotate == "" {
		l.Rotate = "rename"
	}
	if l.Keep == 0 {
		l.Keep = defaultLogKeep
	}
	return l
}

func (l Logs) check() error {
	switch {
	case l.Rotate != "" && l.Rotate != "rename" && l.Rotate != "copytruncate":
		return fmt.Errorf("log rotate %q: want rename or copytruncate", l.Rotate)
	case l.Devices < 0 || l.MaxBytes < 0 || l.Keep < 0:
		return fmt.Errorf("log devices, max_bytes and keep must not be negative")
	case l.MaxBytes > 0 && l.MaxBytes < 256:
		return fmt.Errorf("log max_bytes %d: want at least 256", l.MaxBytes)
	}
	return nil
}

// deviceLogs writes the device log files. It is used from the send loop
// only; Flush is called at each pause so that tailers see lines within a
// tick.
type deviceLogs struct {
	cfg       Logs
	files     []*logFile // by device index, first cfg.Devices devices
	dirty     []*logFile
	line      []byte
	rotations uint64
	err       error // first error; logging stops after it
}

type logFile struct {
	path  string
	f     *os.File
	w     *bufio.Writer
	size  int64
	dirty bool
}

func openDeviceLogs(cfg Logs, names []string) (*deviceLogs, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	l := &deviceLogs{cfg: cfg}
	for _, name := range names[:min(cfg.Devices, len(names))] {
		lf := &logFile{path: filepath.Join(cfg.Dir, name+".log")}
		if err := lf.open(); err != nil {
			l.Close()
			return nil, err
		}
		l.files = append(l.files, lf)
	}
	return l, nil
}

func (lf *logFile) open() error {
	f, err := os.OpenFile(lf.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open device log: %w", err)
	}
	lf.f, lf.size = f, 0
	if lf.w == nil {
		lf.w = bufio.NewWriterSize(f, 16<<10)
	} else {
		lf.w.Reset(f)
	}
	return nil
}

// enabled reports whether device i writes a log.
func (l *deviceLogs) enabled(i int) bool { return l != nil && l.err == nil && i < len(l.files) }

// Reading logs one reading of device i:
//
//	2024-11-25T02:00:00.123Z INFO dev-3 temperature=23.4
func (l *deviceLogs) Reading(i int, tsMillis int64, name, key string, v float64, prec int) {
	if !l.enabled(i) {
		return
	}
	b := l.head(tsMillis, "INFO", name)
	b = append(b, key...)
	b = append(b, '=')
	if prec >= 0 {
		b = strconv.AppendFloat(b, v, 'f', prec, 64)
	} else {
		b = append(b, "reported"...)
	}
	l.write(i, append(b, '\n'))
}

// Event logs a line of free text for device i at level.
func (l *deviceLogs) Event(i int, tsMillis int64, level, name, text string) {
	if !l.enabled(i) {
		return
	}
	b := l.head(tsMillis, level, name)
	b = append(b, text...)
	l.write(i, append(b, '\n'))
}

func (l *deviceLogs) head(tsMillis int64, level, name string) []byte {
	b := time.UnixMilli(tsMillis).UTC().AppendFormat(l.line[:0], "2006-01-02T15:04:05.000Z07:00")
	b = append(b, ' ')
	b = append(b, level...)
	b = append(b, ' ')
	b = append(b, name...)
	return append(b, ' ')
}

func (l *deviceLogs) write(i int, b []byte) {
	l.line = b
	lf := l.files[i]
	if lf.size > 0 && lf.size+int64(len(b)) > l.cfg.MaxBytes {
		if err := l.rotate(lf); err != nil {
			l.err = err
			return
		}
	}
	n, err := lf.w.Write(b)
	lf.size += int64(n)
	if err != nil {
		l.err = fmt.Errorf("write device log: %w", err)
	}
	if !lf.dirty {
		lf.dirty = true
		l.dirty = append(l.dirty, lf)
	}
}

// rotate moves lf's content to lf.path+".1" (shifting older files up, the
// oldest beyond Keep removed) by rename or by copy and truncate.
func (l *deviceLogs) rotate(lf *logFile) error {
	if err := lf.w.Flush(); err != nil {
		return fmt.Errorf("write device log: %w", err)
	}
	for n := l.cfg.Keep; n > 1; n-- {
		err := os.Rename(lf.path+"."+strconv.Itoa(n-1), lf.path+"."+strconv.Itoa(n))
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate device log: %w", err)
		}
	}
	if l.cfg.Rotate == "copytruncate" {
		if err := copyFile(lf.path, lf.path+".1"); err != nil {
			return fmt.Errorf("rotate device log: %w", err)
		}
		// O_APPEND: the next write goes to the new end, offset 0.
		if err := lf.f.Truncate(0); err != nil {
			return fmt.Errorf("rotate device log: %w", err)
		}
		lf.size = 0
	} else {
		if err := lf.f.Close(); err != nil {
			return fmt.Errorf("rotate device log: %w", err)
		}
		if err := os.Rename(lf.path, lf.path+".1"); err != nil {
			return fmt.Errorf("rotate device log: %w", err)
		}
		if err := lf.open(); err != nil {
			return err
		}
	}
	l.rotations++
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// Flush writes buffered lines of the files written since the last Flush.
func (l *deviceLogs) Flush() {
	if l == nil {
		return
	}
	for _, lf := range l.dirty {
		if err := lf.w.Flush(); err != nil && l.err == nil {
			l.err = fmt.Errorf("write device log: %w", err)
		}
		lf.dirty = false
	}
	l.dirty = l.dirty[:0]
}

// Close flushes and closes every file and returns the first error of the
// logs' lifetime.
func (l *deviceLogs) Close() error {
	if l == nil {
		return nil
	}
	l.Flush()
	for _, lf := range l.files {
		if err := lf.f.Close(); err != nil && l.err == nil {
			l.err = fmt.Errorf("close device log: %w", err)
		}
	}
	return l.err
}

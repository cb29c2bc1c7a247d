package buffer

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
)

// errCorruptEntry reports an entry whose bytes do not decode.
var errCorruptEntry = errors.New("corrupt entry")

// Entry layout: version, priority, commit time (unix ms, 8 bytes), rule, key,
// routes, payload (strings as uvarint length + bytes).
const (
	entryVersion = 1
	entryHeader  = 2 + 8
)

func encodeEntry(dst []byte, e *Entry, nowMS int64) []byte {
	dst = append(dst, entryVersion, byte(e.Priority))
	dst = binary.BigEndian.AppendUint64(dst, uint64(nowMS))
	dst = appendString(dst, e.Rule)
	dst = appendString(dst, e.Key)
	dst = binary.AppendUvarint(dst, uint64(len(e.Routes)))
	for _, r := range e.Routes {
		dst = appendString(dst, r)
	}
	return append(dst, e.Payload...)
}

// encodedSize is at least the length encodeEntry appends.
func encodedSize(e *Entry) int {
	n := entryHeader + 10 + len(e.Rule) + 10 + len(e.Key) + 10 + len(e.Payload)
	for _, r := range e.Routes {
		n += 10 + len(r)
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// entryTime returns an encoded entry's commit time (unix ms).
func entryTime(b []byte) (int64, bool) {
	if len(b) < entryHeader || b[0] != entryVersion {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[2:])), true
}

// entryRule returns an encoded entry's rule without decoding the rest.
func entryRule(b []byte) (string, bool) {
	if len(b) < entryHeader || b[0] != entryVersion {
		return "", false
	}
	s, _, ok := readString(b[entryHeader:])
	return s, ok
}

// decodeEntry decodes b into e. e's strings and payload are copies: bbolt's
// bytes are valid only inside the transaction.
func decodeEntry(b []byte, e *Entry) error {
	if len(b) < entryHeader || b[0] != entryVersion {
		return errCorruptEntry
	}
	e.Priority = Priority(b[1])
	b = b[entryHeader:]
	var ok bool
	if e.Rule, b, ok = readString(b); !ok {
		return errCorruptEntry
	}
	if e.Key, b, ok = readString(b); !ok {
		return errCorruptEntry
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return errCorruptEntry
	}
	b = b[w:]
	e.Routes = nil
	for i := uint64(0); i < n; i++ {
		var r string
		if r, b, ok = readString(b); !ok {
			return errCorruptEntry
		}
		e.Routes = append(e.Routes, r)
	}
	e.Payload = append([]byte(nil), b...)
	return nil
}

func readString(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// setPanicOnFault turns a fault on the memory map (a truncated file) into a
// recoverable panic for the calling goroutine, and returns the undo.
func setPanicOnFault() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

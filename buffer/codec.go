package buffer

import (
	"encoding/binary"
	"errors"
)

// errCorruptEntry reports an entry whose bytes do not decode.
var errCorruptEntry = errors.New("corrupt entry")

// Entry layout: version, priority, rule, key, routes, payload (strings as
// uvarint length + bytes).
const entryVersion = 1

func encodeEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, entryVersion, byte(e.Priority))
	dst = appendString(dst, e.Rule)
	dst = appendString(dst, e.Key)
	dst = binary.AppendUvarint(dst, uint64(len(e.Routes)))
	for _, r := range e.Routes {
		dst = appendString(dst, r)
	}
	return append(dst, e.Payload...)
}

// encodedSize is the length encodeEntry appends, give or take varint bytes.
func encodedSize(e *Entry) int {
	n := 2 + 10 + len(e.Rule) + 10 + len(e.Key) + 10 + len(e.Payload)
	for _, r := range e.Routes {
		n += 10 + len(r)
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeEntry decodes b into e. e's strings and payload are copies: bbolt's
// bytes are valid only inside the transaction.
func decodeEntry(b []byte, e *Entry) error {
	if len(b) < 2 || b[0] != entryVersion {
		return errCorruptEntry
	}
	e.Priority = Priority(b[1])
	b = b[2:]
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

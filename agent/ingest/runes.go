package ingest

import "unicode/utf8"

func encodeRune(p []byte, r rune) int {
	if !utf8.ValidRune(r) {
		r = utf8.RuneError
	}
	return utf8.EncodeRune(p, r)
}

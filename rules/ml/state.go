// Package ml holds the learning parts of Sluice's rules: online detectors
// and forecasters that learn one value at a time in fixed memory (anomaly
// score, z-score, EWMA, Holt-Winters, change points), and models trained
// elsewhere that arrive with the config (linear and logistic regression, tree
// ensembles in XGBoost's JSON dump form; see MODELS.md).
//
// A detector is owned by one goroutine (a rule plan's): nothing here locks.
// Each detector saves its whole state with AppendState and loads it with
// DecodeState, so a restored detector continues exactly where the saved one
// stopped.
package ml

import (
	"encoding/binary"
	"errors"
	"math"
)

// Online is a function of a stream that learns as values arrive.
type Online interface {
	// Update learns x and returns the function's value after it; NaN when
	// it has none yet (a rule reads that as null).
	Update(x float64) float64
	// AppendState appends the detector's state to b.
	AppendState(b []byte) []byte
	// DecodeState loads state written by AppendState of a detector made
	// with the same parameters, and returns the bytes after it.
	DecodeState(b []byte) ([]byte, error)
	// Size is the detector's memory in bytes.
	Size() int
}

// ErrBadState reports saved bytes that do not decode.
var ErrBadState = errors.New("ml: saved state does not decode")

// enc and dec write and read fixed-width little-endian numbers.
type enc []byte

func (e enc) f(xs ...float64) enc {
	for _, x := range xs {
		e = binary.LittleEndian.AppendUint64(e, math.Float64bits(x))
	}
	return e
}

func (e enc) u(xs ...uint64) enc {
	for _, x := range xs {
		e = binary.LittleEndian.AppendUint64(e, x)
	}
	return e
}

type dec struct {
	b   []byte
	bad bool
}

func (d *dec) u() uint64 {
	if len(d.b) < 8 {
		d.bad, d.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dec) f() float64 { return math.Float64frombits(d.u()) }

func (d *dec) raw(n int) []byte {
	if len(d.b) < n {
		d.bad, d.b = true, nil
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) done() ([]byte, error) {
	if d.bad {
		return nil, ErrBadState
	}
	return d.b, nil
}

// Package rules compiles rules (a SQL-like expression language, windows,
// aggregates) into plans that turn records into outputs.
//
// A Plan is driven by one goroutine (the agent's pipeline): Process, Tick,
// Checkpoint and Restore are never called concurrently, so plans do not lock.
// A Set drives the plans of one stream over batches of records, sharing
// the work that repeats across them (the group key of each record).
// Rules know nothing of MQTT or bbolt: records come in, outputs and state
// changes go out, and the agent decides where they are stored.
package rules

import (
	"math"
	"strconv"
	"time"
)

// Kind is the type of a Value.
type Kind uint8

const (
	KindNull Kind = iota
	KindNumber
	KindString
	KindBool
)

func (k Kind) String() string {
	switch k {
	case KindNumber:
		return "number"
	case KindString:
		return "string"
	case KindBool:
		return "bool"
	}
	return "null"
}

// Value is a scalar: a number, a string, a bool or null. It is a flat struct so
// that evaluating an expression never allocates.
type Value struct {
	Kind Kind
	Num  float64 // KindNumber; KindBool holds 1 or 0
	Str  string  // KindString
}

// Null is the null value.
var Null = Value{}

// Number returns a number value.
func Number(f float64) Value { return Value{Kind: KindNumber, Num: f} }

// String returns a string value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Bool returns a bool value.
func Bool(b bool) Value {
	if b {
		return Value{Kind: KindBool, Num: 1}
	}
	return Value{Kind: KindBool}
}

// Truthy reports whether v counts as true in a condition: true, or a number
// other than zero. Null, strings and false are not true.
func (v Value) Truthy() bool {
	return (v.Kind == KindBool || v.Kind == KindNumber) && v.Num != 0
}

// AppendText appends v as it reads in a group key.
func (v Value) AppendText(dst []byte) []byte {
	switch v.Kind {
	case KindString:
		return append(dst, v.Str...)
	case KindNumber:
		return appendNumber(dst, v.Num)
	case KindBool:
		return strconv.AppendBool(dst, v.Num != 0)
	}
	return dst
}

// Field is one named value of a record.
type Field struct {
	Name string
	Value
}

// Record is one decoded input message: a flat list of fields. Nested objects
// are flattened by the decoder into dotted names ("gps.lat").
//
// String values may point into the payload the record was decoded from; a plan
// that keeps a string beyond Process (a group key) copies it.
type Record struct {
	Fields []Field
	Time   time.Time // event time when the input has one, else arrival time
	Topic  string
}

// Reset empties r for reuse, keeping its capacity.
func (r *Record) Reset() {
	r.Fields = r.Fields[:0]
	r.Time = time.Time{}
	r.Topic = ""
}

// Get returns the value of the named field, or Null and false.
func (r *Record) Get(name string) (Value, bool) {
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			return r.Fields[i].Value, true
		}
	}
	return Null, false
}

// Set adds or replaces the named field.
func (r *Record) Set(name string, v Value) {
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			r.Fields[i].Value = v
			return
		}
	}
	r.Fields = append(r.Fields, Field{Name: name, Value: v})
}

// appendNumber writes a number as JSON and people read it: plain digits up
// to 1e21 (a millisecond timestamp stays 1795817061935, not
// 1.795817061935e+12), the shortest form that reads back exactly.
func appendNumber(dst []byte, f float64) []byte {
	if a := math.Abs(f); a < 1e21 && (a >= 1e-6 || a == 0) {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

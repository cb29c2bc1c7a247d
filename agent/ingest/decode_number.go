package ingest

import (
	"bytes"
	"fmt"

	"github.com/sluiceio/sluice/rules"
)

// NumberDecoder decodes a payload that is one decimal number (surrounding
// spaces allowed) into one field, "value" unless configured.
type NumberDecoder struct {
	field string
}

func newNumberDecoder(o DecoderOptions) (Decoder, error) {
	d := &NumberDecoder{field: o.Field}
	if d.field == "" {
		d.field = "value"
	}
	return d, nil
}

// Decode appends the number in payload to r.
func (d *NumberDecoder) Decode(payload []byte, r *rules.Record) error {
	f, ok := parseNumber(bytes.TrimSpace(payload))
	if !ok {
		return fmt.Errorf("payload is not a number")
	}
	r.Fields = append(r.Fields, rules.Field{Name: d.field, Value: rules.Number(f)})
	return nil
}

package config

import (
	"strings"
	"testing"
)

func TestNATSPackConfig(t *testing.T) {
	const nats = `nats: {url: "nats://127.0.0.1:4222"}`
	doc := strings.Replace(good, nats, `nats: {url: "nats://127.0.0.1:4222", pack: {max_records: 100, max_bytes: 256KiB, compression: zstd}}`, 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Uplinks[0].NATS.Pack; p == nil || p.MaxRecords != 100 || p.MaxBytes != 256<<10 || p.Compression != "zstd" {
		t.Errorf("pack = %+v", p)
	}
	for _, c := range []struct{ pack, want string }{
		{`{max_records: 1}`, "uplinks[0].nats.pack.max_records: 1: want at least 2"},
		{`{max_records: 10, max_bytes: 2MiB}`, "uplinks[0].nats.pack.max_bytes: want 1KiB to 1MiB"},
		{`{max_records: 10, compression: brotli}`, `uplinks[0].nats.pack.compression: "brotli": want none, zstd or gzip`},
	} {
		doc := strings.Replace(good, nats, `nats: {url: "nats://127.0.0.1:4222", pack: `+c.pack+`}`, 1)
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pack %s: error %v\nwant it to contain %q", c.pack, err, c.want)
		}
	}
}

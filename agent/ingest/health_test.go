package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestHealthEmits(t *testing.T) {
	h := NewHealth(HealthOptions{Input: 2, Name: "host", Interval: 50 * time.Millisecond, DiskPath: t.TempDir()})
	out := make(chan Message, 4)
	if err := h.Start(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sawCPU := false
	var prev time.Time
	for i := range 4 {
		var m Message
		select {
		case m = <-out:
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not emitted", i)
		}
		if m.Input != 2 || m.Topic != "health/host" || m.Acker != nil || m.Position != nil {
			t.Fatalf("message %+v", m)
		}
		if !m.Received.After(prev) {
			t.Fatalf("received %v not after %v", m.Received, prev)
		}
		prev = m.Received
		var v struct {
			Time        time.Time `json:"time"`
			CPU         *float64  `json:"cpu_percent"`
			Load1       *float64  `json:"load1"`
			MemUsed     uint64    `json:"mem_used_bytes"`
			MemTotal    uint64    `json:"mem_total_bytes"`
			MemPercent  *float64  `json:"mem_percent"`
			DiskUsed    uint64    `json:"disk_used_bytes"`
			DiskFree    uint64    `json:"disk_free_bytes"`
			DiskPercent *float64  `json:"disk_percent"`
			Uptime      uint64    `json:"uptime_s"`
			Temp        *float64  `json:"temperature_c"`
		}
		dec := json.NewDecoder(bytes.NewReader(m.Payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("payload %s: %v", m.Payload, err)
		}
		t.Logf("%s", m.Payload)
		if !v.Time.Equal(m.Received) {
			t.Errorf("time %v, received %v", v.Time, m.Received)
		}
		if v.CPU != nil {
			sawCPU = true
			if *v.CPU < 0 || *v.CPU > 100 {
				t.Errorf("cpu_percent %v", *v.CPU)
			}
		}
		if v.Load1 == nil || *v.Load1 < 0 {
			t.Errorf("load1 %v", v.Load1)
		}
		if v.MemTotal == 0 || v.MemUsed == 0 || v.MemUsed > v.MemTotal || v.MemPercent == nil || *v.MemPercent <= 0 || *v.MemPercent > 100 {
			t.Errorf("memory %d/%d %v", v.MemUsed, v.MemTotal, v.MemPercent)
		}
		if v.DiskUsed+v.DiskFree == 0 || v.DiskPercent == nil || *v.DiskPercent < 0 || *v.DiskPercent > 100 {
			t.Errorf("disk %d used %d free %v", v.DiskUsed, v.DiskFree, v.DiskPercent)
		}
		if v.Uptime == 0 {
			t.Error("uptime 0")
		}
		if v.Temp != nil && (*v.Temp <= 0 || *v.Temp >= 200) {
			t.Errorf("temperature %v", *v.Temp)
		}
	}
	if !sawCPU {
		t.Error("no cpu_percent in 4 samples")
	}
}

func TestHealthCloseUnblocks(t *testing.T) {
	h := NewHealth(HealthOptions{Interval: 10 * time.Millisecond})
	if err := h.Start(context.Background(), make(chan Message)); err != nil { // nobody reads
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
}

func TestHealthAppendHelpers(t *testing.T) {
	b := appendFloat([]byte("{\"a\":1"), "nan", nan())
	b = appendFloat(b, "f", 12.3456)
	b = appendUint(b, "u", 42)
	b = append(b, '}')
	if string(b) != `{"a":1,"f":12.35,"u":42}` {
		t.Fatalf("%s", b)
	}
}

func nan() float64 { z := 0.0; return z / z }

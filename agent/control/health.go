package control

import (
	"context"
	"encoding/json"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
)

// Health is the document published on health every interval.
type Health struct {
	Gateway       string    `json:"gateway"`
	Time          time.Time `json:"time"`
	BootSeq       uint64    `json:"boot_seq"`
	ConfigVersion int64     `json:"config_version"`
	Host          any       `json:"host,omitempty"`
	Agent         any       `json:"agent,omitempty"`  // Runtime.Status
	Buffer        any       `json:"buffer,omitempty"` // Runtime.BufferStats
}

// Host is the host part of the health document. A figure the platform does
// not provide is left out.
type Host struct {
	CPUPercent   *float64           `json:"cpu_percent,omitempty"` // since the previous sample
	Load1        *float64           `json:"load1,omitempty"`
	MemUsed      uint64             `json:"mem_used_bytes,omitempty"`
	MemTotal     uint64             `json:"mem_total_bytes,omitempty"`
	MemPercent   *float64           `json:"mem_percent,omitempty"`
	DiskUsed     uint64             `json:"disk_used_bytes,omitempty"`
	DiskFree     uint64             `json:"disk_free_bytes,omitempty"`
	DiskPercent  *float64           `json:"disk_percent,omitempty"`
	Temperatures map[string]float64 `json:"temperatures_c,omitempty"`
	UptimeSec    uint64             `json:"uptime_s,omitempty"`
}

// HostStats samples CPU, memory, disk (of the file system holding dir) and
// temperatures with gopsutil. It does not block to sample CPU: the percentage
// is over the time since the previous call (the first call reports none).
func HostStats(ctx context.Context, dir string) Host {
	var h Host
	if p, err := cpu.PercentWithContext(ctx, 0, false); err == nil && len(p) == 1 {
		h.CPUPercent = &p[0]
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		h.Load1 = &l.Load1
	}
	if v, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		h.MemUsed, h.MemTotal, h.MemPercent = v.Used, v.Total, &v.UsedPercent
	}
	if dir == "" {
		dir = "."
	}
	if d, err := disk.UsageWithContext(ctx, dir); err == nil {
		h.DiskUsed, h.DiskFree, h.DiskPercent = d.Used, d.Free, &d.UsedPercent
	}
	// Partial results come with an error (a sensor that cannot be read).
	if ts, _ := host.SensorsTemperaturesWithContext(ctx); len(ts) > 0 {
		h.Temperatures = map[string]float64{}
		for _, t := range ts {
			if t.Temperature > 0 {
				h.Temperatures[t.SensorKey] = t.Temperature
			}
		}
	}
	if u, err := host.UptimeWithContext(ctx); err == nil {
		h.UptimeSec = u
	}
	return h
}

// HealthNow builds the health document.
func (c *Controller) HealthNow(ctx context.Context) Health {
	c.mu.Lock()
	v := c.appliedVersion
	c.mu.Unlock()
	return Health{Gateway: c.opts.Gateway, Time: c.now().UTC(), BootSeq: c.bootSeq, ConfigVersion: v,
		Host: c.opts.Host(ctx), Agent: c.rt.Status(), Buffer: c.rt.BufferStats()}
}

func (c *Controller) healthLoop(ctx context.Context) {
	every := c.opts.Control.HealthInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	c.opts.Host(ctx) // the first CPU sample starts the interval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.client == nil || !c.client.IsConnectionOpen() {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := json.Marshal(c.HealthNow(hctx))
		cancel()
		if err != nil {
			c.log.Warn("control: health document", "err", err)
			continue
		}
		if err := c.publish(c.healthTopic(), 0, false, b); err != nil {
			c.log.Warn("control: publish health", "err", err)
		}
	}
}

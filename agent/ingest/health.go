package ingest

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
)

// HealthOptions configure a host health input.
type HealthOptions struct {
	Input    int           // index stamped on every Message
	Name     string        // the topic is health/<Name>
	Interval time.Duration // 0 means 10s
	DiskPath string        // file system whose usage is reported; "" means /
	Logger   *slog.Logger
}

// Health is a source that emits the gateway's own health every Interval as
// one JSON object, a record like any other:
//
//	{"time":"2026-01-02T15:04:05.123Z","cpu_percent":3.52,"load1":0.21,
//	 "mem_used_bytes":1,"mem_total_bytes":2,"mem_percent":50,
//	 "disk_used_bytes":1,"disk_free_bytes":1,"disk_percent":50,
//	 "uptime_s":3600,"temperature_c":48.5}
//
// A figure the platform does not provide is left out (temperature_c without
// sensors). cpu_percent is the busy share of all CPUs since the previous
// sample, from the source's own CPU times, so it does not disturb other
// users of gopsutil's cpu.Percent. Messages need no ack (Acker is nil); a
// sample that the pipeline cannot take before the next is due is skipped.
type Health struct {
	opts   HealthOptions
	log    *slog.Logger
	topic  string
	cancel context.CancelFunc
	done   chan struct{}

	prevCPU cpu.TimesStat
	havePrv bool
}

// NewHealth returns a health source; Start runs it.
func NewHealth(opts HealthOptions) *Health {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.DiskPath == "" {
		opts.DiskPath = "/"
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Health{opts: opts, log: log.With("input", opts.Name), topic: "health/" + opts.Name}
}

// Start takes the first CPU sample and emits a message to out every Interval
// until ctx ends or Close is called. It always returns nil.
func (h *Health) Start(ctx context.Context, out chan<- Message) error {
	h.cpuPercent(ctx) // the first sample starts the interval
	ctx, h.cancel = context.WithCancel(ctx)
	h.done = make(chan struct{})
	go h.run(ctx, out)
	return nil
}

// Close stops the source and waits for its goroutine.
func (h *Health) Close() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
}

func (h *Health) run(ctx context.Context, out chan<- Message) {
	defer close(h.done)
	t := time.NewTicker(h.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, min(h.opts.Interval, 5*time.Second))
		now := time.Now()
		p := h.Sample(sctx, nil, now)
		cancel()
		select {
		case out <- Message{Input: h.opts.Input, Topic: h.topic, Payload: p, Received: now}:
		case <-ctx.Done():
			return
		}
	}
}

// Sample appends one health object, taken at now, to dst. It is not safe for
// concurrent use (it keeps the previous CPU times).
func (h *Health) Sample(ctx context.Context, dst []byte, now time.Time) []byte {
	b := append(dst, `{"time":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if p, ok := h.cpuPercent(ctx); ok {
		b = appendFloat(b, "cpu_percent", p)
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		b = appendFloat(b, "load1", l.Load1)
	}
	if v, err := mem.VirtualMemoryWithContext(ctx); err == nil && v.Total > 0 {
		b = appendUint(b, "mem_used_bytes", v.Used)
		b = appendUint(b, "mem_total_bytes", v.Total)
		b = appendFloat(b, "mem_percent", v.UsedPercent)
	}
	if d, err := disk.UsageWithContext(ctx, h.opts.DiskPath); err == nil && d.Total > 0 {
		b = appendUint(b, "disk_used_bytes", d.Used)
		b = appendUint(b, "disk_free_bytes", d.Free)
		b = appendFloat(b, "disk_percent", d.UsedPercent)
	}
	if u, err := host.UptimeWithContext(ctx); err == nil {
		b = appendUint(b, "uptime_s", u)
	}
	// Partial results come with an error (a sensor that cannot be read).
	ts, _ := host.SensorsTemperaturesWithContext(ctx)
	maxT, found := 0.0, false
	for _, t := range ts {
		if t.Temperature > 0 && t.Temperature < 200 && t.Temperature > maxT {
			maxT, found = t.Temperature, true
		}
	}
	if found {
		b = appendFloat(b, "temperature_c", maxT)
	}
	return append(b, '}')
}

// cpuPercent is the busy share of all CPUs since the previous call, as
// gopsutil computes it (guest time is in user time; idle and iowait are not
// busy).
func (h *Health) cpuPercent(ctx context.Context) (float64, bool) {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(ts) != 1 {
		return 0, false
	}
	cur := ts[0]
	prev, ok := h.prevCPU, h.havePrv
	h.prevCPU, h.havePrv = cur, true
	if !ok {
		return 0, false
	}
	all0, busy0 := cpuBusy(prev)
	all1, busy1 := cpuBusy(cur)
	if all1 <= all0 {
		return 0, false // no tick elapsed: no figure
	}
	return math.Min(100, math.Max(0, (busy1-busy0)/(all1-all0)*100)), true
}

func cpuBusy(t cpu.TimesStat) (all, busy float64) {
	all = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return all, all - t.Idle - t.Iowait
}

func appendFloat(b []byte, key string, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendFloat(b, math.Round(v*100)/100, 'f', -1, 64)
}

func appendUint(b []byte, key string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

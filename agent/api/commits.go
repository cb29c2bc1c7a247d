package api

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluiceio/sluice/buffer"
)

// Histogram names; see metricsTable in metrics.go for what they measure.
const (
	histCommitDuration = "sluice_commit_duration_seconds"
	histCommitLatency  = "sluice_commit_latency_seconds"
	histEndToEnd       = "sluice_end_to_end_latency_seconds"
)

// Histogram bucket upper bounds, in seconds.
var (
	commitBuckets  = metrics.ExponentialBuckets(0.0005, 2, 14) // 0.5 ms .. 4.1 s
	latencyBuckets = metrics.ExponentialBuckets(0.001, 2, 17)  // 1 ms .. 65.5 s
)

// pendingCommits bounds the commits remembered for end-to-end latency.
const pendingCommits = 4096

// histograms holds the latency histograms and the commits whose entries some
// uplink has not acknowledged yet.
type histograms struct {
	set      *metrics.Set
	duration *metrics.PrometheusHistogram
	latency  *metrics.PrometheusHistogram

	mu      sync.Mutex
	commits []commitMark      // by lastSeq, ascending
	acked   map[string]uint64 // per uplink: highest seq acknowledged
}

// commitMark is a commit's newest seq and the arrival of its oldest input.
type commitMark struct {
	lastSeq uint64
	oldest  time.Time
}

func newHistograms(set *metrics.Set) *histograms {
	return &histograms{
		set:      set,
		duration: set.NewPrometheusHistogramExt(histCommitDuration, commitBuckets),
		latency:  set.NewPrometheusHistogramExt(histCommitLatency, latencyBuckets),
		acked:    map[string]uint64{},
	}
}

func (h *histograms) endToEnd(uplink string) *metrics.PrometheusHistogram {
	return h.set.GetOrCreatePrometheusHistogramExt(histEndToEnd+`{uplink="`+labelValue(uplink)+`"}`, latencyBuckets)
}

// Committed is the hook the pipeline calls after each successful commit, on
// its own goroutine, before it acks the inputs: entries carry their Seq,
// oldest is the arrival of the oldest input (or the creation of the first
// output) the commit covers, zero when unknown, and took is the time the
// buffer's Commit took, fsync included. It records the commit latencies,
// keeps the last outputs of each rule and sends the entries to the stream's
// subscribers without blocking. It does not keep entries or their payloads.
func (s *Server) Committed(entries []buffer.Entry, oldest time.Time, took time.Duration) {
	now := time.Now()
	h := s.hists
	h.duration.Update(took.Seconds())
	if !oldest.IsZero() {
		h.latency.Update(now.Sub(oldest).Seconds())
		if n := len(entries); n > 0 {
			h.mu.Lock()
			h.commits = append(h.commits, commitMark{lastSeq: entries[n-1].Seq, oldest: oldest})
			if len(h.commits) > pendingCommits {
				h.commits = append(h.commits[:0], h.commits[len(h.commits)-pendingCommits:]...)
			}
			h.mu.Unlock()
		}
	}
	if len(entries) == 0 {
		return
	}
	s.outs.add(entries, now)
	s.stream.publish(entries, s.outs.env)
}

// Acked returns the hook for the named uplink's forwarder (its OnAck): after
// the uplink acknowledged entries up to pos, it records the end-to-end
// latency, from the arrival of the oldest input of each commit now fully
// acknowledged to now. Safe for concurrent use by several forwarders.
func (s *Server) Acked(uplink string) func(pos buffer.Position) {
	hist := s.hists.endToEnd(uplink)
	h := s.hists
	h.mu.Lock()
	if _, ok := h.acked[uplink]; !ok {
		h.acked[uplink] = 0
	}
	h.mu.Unlock()
	return func(pos buffer.Position) {
		seq := max(pos.Normal, pos.High)
		now := time.Now()
		h.mu.Lock()
		defer h.mu.Unlock()
		prev := h.acked[uplink]
		if seq <= prev {
			return
		}
		h.acked[uplink] = seq
		for _, c := range h.commits {
			if c.lastSeq > seq {
				break
			}
			if c.lastSeq > prev {
				hist.Update(now.Sub(c.oldest).Seconds())
			}
		}
		// Forget the commits every uplink with a hook has acknowledged.
		low := seq
		for _, a := range h.acked {
			low = min(low, a)
		}
		i := 0
		for i < len(h.commits) && h.commits[i].lastSeq <= low {
			i++
		}
		h.commits = append(h.commits[:0], h.commits[i:]...)
	}
}

package api

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	vmmetrics "github.com/VictoriaMetrics/metrics"
)

// Metric describes one exported metric family. The names are stable: a
// rename is a breaking change for dashboards and alerts.
type Metric struct {
	Name   string
	Type   string // counter, gauge, histogram
	Labels string // comma-separated label names; "" when none
	Help   string
}

// Metrics returns every sluice_ metric family /metrics exports, in the order
// written. The Go runtime's go_* and process_* families come on top.
func Metrics() []Metric {
	out := make([]Metric, 0, len(families)+3)
	for _, f := range families {
		out = append(out, f.Metric)
	}
	return append(out,
		Metric{histCommitDuration, "histogram", "", "Time of one buffer commit (one bbolt transaction, fsync included)."},
		Metric{histCommitLatency, "histogram", "", "From the arrival of the oldest input a commit covers to the commit being durable."},
		Metric{histEndToEnd, "histogram", "uplink", "From the arrival of the oldest input a commit covers to the uplink acknowledging all its entries."},
	)
}

// family is a metric family written from a Status: one sample per element
// of the part it reads.
type family struct {
	Metric
	write func(w *promWriter, name string, st *Status)
}

func perInput(f func(*Input) float64) func(*promWriter, string, *Status) {
	return func(w *promWriter, name string, st *Status) {
		for i := range st.Inputs {
			w.sample(name, "input", st.Inputs[i].Name, f(&st.Inputs[i]))
		}
	}
}

// perLog writes one sample per log input; other inputs have none.
func perLog(f func(*LogInput) float64) func(*promWriter, string, *Status) {
	return func(w *promWriter, name string, st *Status) {
		for i := range st.Inputs {
			if l := st.Inputs[i].Log; l != nil {
				w.sample(name, "input", st.Inputs[i].Name, f(l))
			}
		}
	}
}

func perRule(f func(*Rule) uint64) func(*promWriter, string, *Status) {
	return func(w *promWriter, name string, st *Status) {
		for i := range st.Rules {
			w.sample(name, "rule", st.Rules[i].Name, float64(f(&st.Rules[i])))
		}
	}
}

func perUplink(f func(*Uplink) float64) func(*promWriter, string, *Status) {
	return func(w *promWriter, name string, st *Status) {
		for i := range st.Uplinks {
			w.sample(name, "uplink", st.Uplinks[i].Name, f(&st.Uplinks[i]))
		}
	}
}

func one(f func(*Status) float64) func(*promWriter, string, *Status) {
	return func(w *promWriter, name string, st *Status) { w.sample(name, "", "", f(st)) }
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

var families = []family{
	{Metric{"sluice_build_info", "gauge", "version,gateway", "Always 1; the labels say which agent this is."},
		func(w *promWriter, name string, st *Status) {
			w.line(name + `{version="` + labelValue(st.Version) + `",gateway="` + labelValue(st.Gateway) + `"} 1`)
		}},
	{Metric{"sluice_start_time_seconds", "gauge", "", "When the agent started, in Unix seconds."},
		one(func(st *Status) float64 { return unixSeconds(st.Started) })},
	{Metric{"sluice_ready", "gauge", "", "1 when every input is subscribed and the buffer is open."},
		one(func(st *Status) float64 { return b2f(st.Ready) })},

	{Metric{"sluice_input_connected", "gauge", "input", "1 while the input's MQTT client is connected."},
		perInput(func(in *Input) float64 { return b2f(in.Connected) })},
	{Metric{"sluice_input_subscribed", "gauge", "input", "1 once the input's subscription was acknowledged."},
		perInput(func(in *Input) float64 { return b2f(in.Subscribed) })},
	{Metric{"sluice_input_received_total", "counter", "input", "Messages received from the broker."},
		perInput(func(in *Input) float64 { return float64(in.Received) })},
	{Metric{"sluice_input_messages_total", "counter", "input", "Messages the input stage handled."},
		perInput(func(in *Input) float64 { return float64(in.Messages) })},
	{Metric{"sluice_input_dead_letters_total", "counter", "input", "Messages rejected (undecodable, oversized); see /api/v1/deadletters."},
		perInput(func(in *Input) float64 { return float64(in.DeadLetters) })},
	{Metric{"sluice_input_duplicates_total", "counter", "input", "Redeliveries recognised as committed before and skipped."},
		perInput(func(in *Input) float64 { return float64(in.Duplicates) })},
	{Metric{"sluice_input_oversized_total", "counter", "input", "Messages larger than max_payload."},
		perInput(func(in *Input) float64 { return float64(in.Oversized) })},
	{Metric{"sluice_input_connects_total", "counter", "input", "Successful connections to the broker."},
		perInput(func(in *Input) float64 { return float64(in.Connects) })},

	{Metric{"sluice_log_lines_total", "counter", "input", "Lines (or multiline records) a log input read and handed on."},
		perLog(func(l *LogInput) float64 { return float64(l.Lines) })},
	{Metric{"sluice_log_bytes_total", "counter", "input", "Bytes a log input read from its files."},
		perLog(func(l *LogInput) float64 { return float64(l.Bytes) })},
	{Metric{"sluice_log_files_opened_total", "counter", "input", "Files a log input opened, rotated files and copytruncate copies included."},
		perLog(func(l *LogInput) float64 { return float64(l.FilesOpened) })},
	{Metric{"sluice_log_files_open", "gauge", "input", "Files a log input holds open now (a rotated file stays open until quiet for rotate_wait)."},
		perLog(func(l *LogInput) float64 { return float64(l.Open) })},
	{Metric{"sluice_log_rotations_total", "counter", "input", "Files that stopped matching the input's paths (renamed away or deleted)."},
		perLog(func(l *LogInput) float64 { return float64(l.Rotations) })},
	{Metric{"sluice_log_truncations_total", "counter", "input", "Files read again from the start (copytruncate, replaced content)."},
		perLog(func(l *LogInput) float64 { return float64(l.Truncations) })},
	{Metric{"sluice_log_long_lines_total", "counter", "input", "Lines cut at max_line_bytes."},
		perLog(func(l *LogInput) float64 { return float64(l.LongLines) })},
	{Metric{"sluice_log_resumed_total", "counter", "input", "Files resumed from a saved position at start."},
		perLog(func(l *LogInput) float64 { return float64(l.Resumed) })},
	{Metric{"sluice_log_copies_total", "counter", "input", "copytruncate copies read for the lines not yet read."},
		perLog(func(l *LogInput) float64 { return float64(l.Copies) })},
	{Metric{"sluice_log_uncovered_total", "counter", "input", "Rotated files no saved position covered, read from the start."},
		perLog(func(l *LogInput) float64 { return float64(l.Uncovered) })},

	{Metric{"sluice_rule_processed_total", "counter", "rule", "Records given to the rule."},
		perRule(func(r *Rule) uint64 { return r.Processed })},
	{Metric{"sluice_rule_filtered_total", "counter", "rule", "Records that failed the rule's where."},
		perRule(func(r *Rule) uint64 { return r.Filtered })},
	{Metric{"sluice_rule_late_total", "counter", "rule", "Records older than the watermark (event time)."},
		perRule(func(r *Rule) uint64 { return r.Late })},
	{Metric{"sluice_rule_groups_dropped_total", "counter", "rule", "Records dropped because the group cap was reached."},
		perRule(func(r *Rule) uint64 { return r.GroupsDropped })},
	{Metric{"sluice_rule_emitted_total", "counter", "rule", "Outputs the rule emitted."},
		perRule(func(r *Rule) uint64 { return r.Emitted })},

	{Metric{"sluice_uplink_up", "gauge", "uplink", "1 while the uplink is connected (its last delivery succeeded)."},
		perUplink(func(u *Uplink) float64 { return b2f(u.Connected) })},
	{Metric{"sluice_uplink_lag_entries", "gauge", "uplink", "Entries committed but not yet acknowledged by the uplink."},
		perUplink(func(u *Uplink) float64 { return float64(u.Lag) })},
	{Metric{"sluice_uplink_backlog", "gauge", "uplink", "1 while a backlog drains beside live entries."},
		perUplink(func(u *Uplink) float64 { return b2f(u.Backlog) })},
	{Metric{"sluice_uplink_delivered_total", "counter", "uplink", "Entries the uplink acknowledged."},
		perUplink(func(u *Uplink) float64 { return float64(u.Delivered) })},
	{Metric{"sluice_uplink_failures_total", "counter", "uplink", "Failed deliveries (each retried)."},
		perUplink(func(u *Uplink) float64 { return float64(u.Failures) })},
	{Metric{"sluice_uplink_rejected_total", "counter", "uplink", "Entries the upstream refused for good (invalid subject or topic, too large), set aside as dead letters."},
		perUplink(func(u *Uplink) float64 { return float64(u.Rejected) })},

	{Metric{"sluice_buffer_open", "gauge", "", "1 while the buffer file is open."},
		one(func(st *Status) float64 { return b2f(st.Buffer.Open) })},
	{Metric{"sluice_buffer_records", "gauge", "", "Entries queued."},
		one(func(st *Status) float64 { return float64(st.Buffer.Records) })},
	{Metric{"sluice_buffer_bytes", "gauge", "", "Bytes of queued entries."},
		one(func(st *Status) float64 { return float64(st.Buffer.Bytes) })},
	{Metric{"sluice_buffer_file_bytes", "gauge", "", "Size of the buffer file on disk."},
		one(func(st *Status) float64 { return float64(st.Buffer.FileBytes) })},
	{Metric{"sluice_buffer_oldest_age_seconds", "gauge", "", "Age of the oldest queued entry; 0 when empty."},
		one(func(st *Status) float64 { return st.Buffer.OldestAgeSeconds })},
	{Metric{"sluice_buffer_last_seq", "gauge", "", "Seq of the newest committed entry."},
		one(func(st *Status) float64 { return float64(st.Buffer.LastSeq) })},
	{Metric{"sluice_buffer_max_records", "gauge", "", "Cap on queued entries; 0: none."},
		one(func(st *Status) float64 { return float64(st.Buffer.MaxRecords) })},
	{Metric{"sluice_buffer_max_bytes", "gauge", "", "Cap on queued bytes; 0: none."},
		one(func(st *Status) float64 { return float64(st.Buffer.MaxBytes) })},
	{Metric{"sluice_buffer_max_age_seconds", "gauge", "", "Cap on the age of queued entries; 0: none."},
		one(func(st *Status) float64 { return st.Buffer.MaxAgeSeconds })},
	{Metric{"sluice_buffer_commits_total", "counter", "", "Buffer transactions committed."},
		one(func(st *Status) float64 { return float64(st.Buffer.Commits) })},
	{Metric{"sluice_buffer_committed_total", "counter", "", "Entries appended."},
		one(func(st *Status) float64 { return float64(st.Buffer.Committed) })},
	{Metric{"sluice_buffer_deleted_total", "counter", "", "Entries deleted once every uplink acknowledged them."},
		one(func(st *Status) float64 { return float64(st.Buffer.Deleted) })},
	{Metric{"sluice_buffer_dropped_total", "counter", "rule,priority,reason", "Entries dropped by the caps (reason full or age)."},
		func(w *promWriter, name string, st *Status) {
			for _, d := range st.Buffer.Drops {
				w.line(name + `{rule="` + labelValue(d.Rule) + `",priority="` + labelValue(d.Priority) + `",reason="` + labelValue(d.Reason) + `"} ` + strconv.FormatUint(d.Count, 10))
			}
		}},
	{Metric{"sluice_buffer_full_total", "counter", "", "Commits refused by the backpressure policy."},
		one(func(st *Status) float64 { return float64(st.Buffer.Full) })},
	{Metric{"sluice_buffer_compactions_total", "counter", "", "Buffer file compactions."},
		one(func(st *Status) float64 { return float64(st.Buffer.Compactions) })},

	{Metric{"sluice_pipeline_commits_total", "counter", "", "Group commits by the pipeline."},
		one(func(st *Status) float64 { return float64(st.Pipeline.Commits) })},
	{Metric{"sluice_pipeline_commit_errors_total", "counter", "", "Failed commit attempts (retried; inputs stay unacked)."},
		one(func(st *Status) float64 { return float64(st.Pipeline.CommitErrors) })},
	{Metric{"sluice_pipeline_outputs_total", "counter", "", "Outputs committed."},
		one(func(st *Status) float64 { return float64(st.Pipeline.Outputs) })},
	{Metric{"sluice_pipeline_commit_seconds_total", "counter", "", "Time spent in commits."},
		one(func(st *Status) float64 { return st.Pipeline.CommitSeconds })},
	{Metric{"sluice_pipeline_last_tick_timestamp_seconds", "gauge", "", "When the pipeline loop last ticked, in Unix seconds; a stale value means it is wedged."},
		one(func(st *Status) float64 { return unixSeconds(st.Pipeline.LastTick) })},
}

// promWriter writes the Prometheus text format.
type promWriter struct{ w *bufio.Writer }

func (p *promWriter) line(s string) {
	p.w.WriteString(s)
	p.w.WriteByte('\n')
}

func (p *promWriter) sample(name, label, value string, v float64) {
	p.w.WriteString(name)
	if label != "" {
		p.w.WriteString("{" + label + `="` + labelValue(value) + `"}`)
	}
	p.w.WriteByte(' ')
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		p.w.WriteString(strconv.FormatFloat(v, 'f', -1, 64)) // integers in full
	} else {
		p.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	p.w.WriteByte('\n')
}

// writeStatusMetrics writes every family read from st, each with its HELP
// and TYPE lines.
func writeStatusMetrics(w io.Writer, st *Status) error {
	p := &promWriter{w: bufio.NewWriter(w)}
	for _, f := range families {
		p.line("# HELP " + f.Name + " " + f.Help)
		p.line("# TYPE " + f.Name + " " + f.Type)
		f.write(p, f.Name, st)
	}
	return p.w.Flush()
}

// writeHistograms writes the set's histograms, each family headed by its
// HELP and TYPE lines (the set writes samples only).
func writeHistograms(w io.Writer, set *vmmetrics.Set) {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	help := map[string]string{}
	for _, m := range Metrics() {
		if m.Type == "histogram" {
			help[m.Name] = m.Help
		}
	}
	bw := bufio.NewWriter(w)
	prev := ""
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		name := line
		if i := strings.IndexAny(name, "{ "); i >= 0 {
			name = name[:i]
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		if h, ok := help[name]; ok && name != prev {
			bw.WriteString("# HELP " + name + " " + h + "\n# TYPE " + name + " histogram\n")
			prev = name
		}
		bw.WriteString(line)
	}
	bw.Flush()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// labelValue escapes s for use inside a quoted label value.
func labelValue(s string) string { return labelEscaper.Replace(s) }

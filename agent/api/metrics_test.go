package api

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/buffer"
)

func TestMetricsExact(t *testing.T) {
	st := sampleStatus()
	st.Inputs = append(st.Inputs, Input{Name: "applog", Messages: 120, Log: &LogInput{Lines: 120, Bytes: 9840, FilesOpened: 3,
		Open: 2, Rotations: 1, Truncations: 4, LongLines: 5, Resumed: 6, Copies: 7, Uncovered: 8}})
	src := &fixedSource{st: st}
	s, ts := newTestServer(t, src)
	ack := s.Acked("cloud")
	s.Committed([]buffer.Entry{entry(1, "r", `{}`), entry(2, "r", `{}`)}, time.Now().Add(-time.Second), 3*time.Millisecond)
	s.Committed(nil, time.Time{}, 100*time.Millisecond) // state only
	ack(buffer.Position{Normal: 2})
	ack(buffer.Position{Normal: 2}) // nothing new

	code, body := get(t, ts.URL+"/metrics", "")
	if code != 200 {
		t.Fatal(code)
	}
	for _, want := range []string{
		"# TYPE sluice_input_messages_total counter",
		`sluice_build_info{version="v1.2.3",gateway="gw-01"} 1`,
		"sluice_ready 1",
		`sluice_input_connected{input="telemetry"} 1`,
		`sluice_input_received_total{input="telemetry"} 1002`,
		`sluice_input_messages_total{input="telemetry"} 1000`,
		`sluice_input_dead_letters_total{input="telemetry"} 7`,
		`sluice_input_duplicates_total{input="telemetry"} 2`,
		`sluice_input_oversized_total{input="telemetry"} 1`,
		`sluice_input_connects_total{input="telemetry"} 3`,
		`sluice_log_lines_total{input="applog"} 120`,
		`sluice_log_bytes_total{input="applog"} 9840`,
		`sluice_log_files_opened_total{input="applog"} 3`,
		`sluice_log_files_open{input="applog"} 2`,
		`sluice_log_rotations_total{input="applog"} 1`,
		`sluice_log_truncations_total{input="applog"} 4`,
		`sluice_log_long_lines_total{input="applog"} 5`,
		`sluice_log_resumed_total{input="applog"} 6`,
		`sluice_log_copies_total{input="applog"} 7`,
		`sluice_log_uncovered_total{input="applog"} 8`,
		`sluice_rule_processed_total{rule="pump_temp_1m"} 993`,
		`sluice_rule_filtered_total{rule="pump_temp_1m"} 13`,
		`sluice_rule_late_total{rule="pump_temp_1m"} 4`,
		`sluice_rule_groups_dropped_total{rule="pump_temp_1m"} 5`,
		`sluice_rule_emitted_total{rule="pump_temp_1m"} 20`,
		`sluice_rule_emitted_total{rule="alerts"} 1`,
		`sluice_uplink_up{uplink="cloud"} 1`,
		`sluice_uplink_up{uplink="backup"} 0`,
		`sluice_uplink_lag_entries{uplink="backup"} 21`,
		`sluice_uplink_delivered_total{uplink="cloud"} 15`,
		`sluice_uplink_failures_total{uplink="cloud"} 2`,
		"sluice_buffer_records 21",
		"sluice_buffer_bytes 4096",
		"sluice_buffer_oldest_age_seconds 2.5",
		"sluice_buffer_max_bytes 268435456",
		`sluice_buffer_dropped_total{rule="pump_temp_1m",priority="normal",reason="full"} 3`,
		"sluice_pipeline_commit_errors_total 1",
		"sluice_pipeline_commit_seconds_total 0.25",
		"sluice_pipeline_last_tick_timestamp_seconds " + strconv.FormatInt(t0.Unix(), 10),
		"sluice_start_time_seconds " + strconv.FormatInt(t0.Unix()-3600, 10),
		`sluice_commit_duration_seconds_bucket{le="0.002"} 0`,
		`sluice_commit_duration_seconds_bucket{le="0.004"} 1`,
		`sluice_commit_duration_seconds_bucket{le="0.128"} 2`,
		"sluice_commit_duration_seconds_count 2",
		`sluice_commit_latency_seconds_bucket{le="0.512"} 0`,
		"sluice_commit_latency_seconds_count 1",
		`sluice_end_to_end_latency_seconds_bucket{uplink="cloud",le="0.512"} 0`,
		`sluice_end_to_end_latency_seconds_count{uplink="cloud"} 1`,
		`sluice_end_to_end_latency_seconds_count{uplink="backup"} 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// An input that is not a log input has no log samples.
	if strings.Contains(body, `sluice_log_lines_total{input="telemetry"}`) {
		t.Error("the MQTT input has a log sample")
	}
	// Every documented family is exported, and nothing undocumented is.
	documented := map[string]bool{}
	for _, m := range Metrics() {
		documented[m.Name] = true
		if !regexp.MustCompile(`(?m)^`+m.Name+`(_bucket|_sum|_count)?[{ ]`).MatchString(body) && m.Name != "sluice_buffer_dropped_total" {
			t.Errorf("%s is documented but not exported", m.Name)
		}
	}
	for _, name := range regexp.MustCompile(`(?m)^(sluice_[a-z_]+)`).FindAllString(body, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !documented[name] && !documented[base] {
			t.Errorf("%s is exported but not in Metrics()", name)
		}
	}
}

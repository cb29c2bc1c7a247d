package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is a scenario file: the simulator's options in YAML, decoded
// strictly (an unknown key is an error). Options left out keep the command
// line's defaults, and flags given on the command line override the file.
//
//	description: a small plant with a bad day
//	devices: 200
//	rate: 400
//	duration: 5m
//	profiles: {temphum: 6, vibration: 2, power: 1, door: 1}
//	faults: {spike: 0.001, stuck: 0.0002, malformed: 0.001}
//	truth_out: truth.jsonl
type Scenario struct {
	Description string        `yaml:"description"`
	Broker      string        `yaml:"broker"`
	Devices     int           `yaml:"devices"`
	Connections int           `yaml:"connections"`
	Rate        float64       `yaml:"rate"`
	Burst       uint64        `yaml:"burst"`
	Duration    time.Duration `yaml:"duration"`
	Count       uint64        `yaml:"count"`
	QoS         *int          `yaml:"qos"`
	Topic       string        `yaml:"topic"`
	Seed        *uint64       `yaml:"seed"`
	StartTSMs   *int64        `yaml:"start_ts_ms"`
	UTCOffset   time.Duration `yaml:"utc_offset"`
	Nagle       bool          `yaml:"nagle"`
	Raw         bool          `yaml:"raw"`
	// Profiles is the profile mix, name: weight.
	Profiles   map[string]int `yaml:"profiles"`
	Faults     Faults         `yaml:"faults"`
	CmdTopic   *string        `yaml:"cmd_topic"`
	Logs       Logs           `yaml:"logs"`
	TruthOut   string         `yaml:"truth_out"`
	ValuesOut  string         `yaml:"values_out"`
	SummaryOut string         `yaml:"summary_json"`
}

// LoadScenario reads and strictly decodes the scenario file at path.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("scenario %s: empty", path)
		}
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	if err := dec.Decode(new(Scenario)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("scenario %s: want one YAML document", path)
	}
	if _, err := s.mix(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return &s, nil
}

// mix returns the profile mix in profile order (nil if none is given), so
// that device assignment does not depend on map order.
func (s *Scenario) mix() ([]ProfileWeight, error) {
	if len(s.Profiles) == 0 {
		return nil, nil
	}
	var mix []ProfileWeight
	for name, w := range s.Profiles {
		p, err := ParseProfile(name)
		if err != nil {
			return nil, err
		}
		mix = append(mix, ProfileWeight{p, w})
	}
	slices.SortFunc(mix, func(a, b ProfileWeight) int { return int(a.Profile) - int(b.Profile) })
	return mix, checkMix(mix)
}

// apply sets the options the scenario gives on cfg.
func (s *Scenario) apply(cfg *config) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Broker, s.Broker)
	set(&cfg.Topic, s.Topic)
	set(&cfg.TruthOut, s.TruthOut)
	set(&cfg.ValuesOut, s.ValuesOut)
	set(&cfg.SummaryJSON, s.SummaryOut)
	if s.Devices != 0 {
		cfg.Devices = s.Devices
	}
	if s.Connections != 0 {
		cfg.Connections = s.Connections
	}
	if s.Rate != 0 {
		cfg.Rate = s.Rate
	}
	if s.Burst != 0 {
		cfg.Burst = s.Burst
	}
	if s.Duration != 0 {
		cfg.Duration = s.Duration
	}
	if s.Count != 0 {
		cfg.Count = s.Count
	}
	if s.QoS != nil {
		cfg.QoS = *s.QoS
	}
	if s.Seed != nil {
		cfg.Seed = *s.Seed
	}
	if s.StartTSMs != nil {
		cfg.StartTSMs, cfg.StartTSSet = *s.StartTSMs, true
	}
	if s.Nagle {
		cfg.Nagle = true
	}
	if s.Raw {
		cfg.Raw = true
	}
	if s.UTCOffset != 0 {
		cfg.UTCOffset = s.UTCOffset
	}
	if s.CmdTopic != nil {
		cfg.CmdTopic = *s.CmdTopic
	}
	cfg.Mix, _ = s.mix() // checked by LoadScenario
	cfg.Faults = s.Faults
	cfg.Logs = s.Logs
}

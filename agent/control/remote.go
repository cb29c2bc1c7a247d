package control

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluiceio/sluice/agent/config"
)

// ParseRemote turns the config member of a desired document into a Config,
// with the real parser and validation (config.Parse), completed from the
// local file: gateway, data_dir and buffer.path default to the local ones
// (the applied document is kept in that buffer, so it must not move), and
// the control section is always the local one. A gateway field that names
// another gateway is an error. Errors are config.Errors with field paths
// relative to the config member.
func ParseRemote(cfg []byte, local *config.Config) (*config.Config, error) {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil || m == nil {
		return nil, config.Errors{{Path: "", Msg: "the config is not a JSON object"}}
	}
	if _, ok := m["control"]; ok {
		return nil, config.Errors{{Path: "control", Msg: "is read from the local file only, never over MQTT"}}
	}
	if g, ok := m["gateway"]; !ok {
		m["gateway"] = local.Gateway
	} else if g != local.Gateway {
		return nil, config.Errors{{Path: "gateway", Msg: fmt.Sprintf("%v is not this gateway (%s)", g, local.Gateway)}}
	}
	if _, ok := m["data_dir"]; !ok {
		m["data_dir"] = local.DataDir
	}
	if b, ok := m["buffer"].(map[string]any); ok {
		if _, ok := b["path"]; !ok {
			b["path"] = local.Buffer.Path
		}
	} else if _, ok := m["buffer"]; !ok {
		m["buffer"] = map[string]any{"path": local.Buffer.Path}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	c, err := config.Parse(data) // JSON is YAML: the same strict decoding and validation
	if err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, config.Errors{{Path: "", Msg: err.Error()}}
	}
	c.Control = local.Control
	return c, nil
}

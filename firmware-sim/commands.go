package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Device commands. With the command topic template devices/{device}/cmd a
// device answers requests published to devices/<id>/cmd/<command> with a
// reply on devices/<id>/cmd/res (QoS 1). A request's payload is a JSON
// object (or empty); its "id", if any, is echoed in the reply.
//
//	set-interval {"id":"r1","interval_ms":5000}
//	    the device sends at most once per interval_ms of message time
//	    (0: on every turn); a device cannot send more often than its turn
//	    comes round (turn_ms in the reply).
//	ping {"id":"r2"}
//	get-state {"id":"r3"}
//	    the profile, interval and topic of the device.
//
// Unknown commands and bad requests get {"ok":false,"error":...}.

// cmdTemplate is a parsed command topic template: prefix + device + suffix.
type cmdTemplate struct{ prefix, suffix string }

func parseCmdTemplate(t string) (cmdTemplate, error) {
	prefix, suffix, ok := strings.Cut(t, "{device}")
	switch {
	case !ok || strings.Contains(suffix, "{device}"):
		return cmdTemplate{}, fmt.Errorf("--cmd-topic %q: want {device} exactly once", t)
	case (prefix != "" && !strings.HasSuffix(prefix, "/")) || (suffix != "" && !strings.HasPrefix(suffix, "/")):
		return cmdTemplate{}, fmt.Errorf("--cmd-topic %q: {device} must be a whole topic level", t)
	case strings.ContainsAny(t, "+#\x00"):
		return cmdTemplate{}, fmt.Errorf("--cmd-topic %q: cannot contain '+', '#' or NUL", t)
	}
	return cmdTemplate{prefix, suffix}, nil
}

// filter returns the subscription that covers every device's commands.
func (c cmdTemplate) filter() string { return c.prefix + "+" + c.suffix + "/+" }

// split returns the device and command of a topic the filter matched.
func (c cmdTemplate) split(topic string) (device, cmd string, ok bool) {
	rest, ok := strings.CutPrefix(topic, c.prefix)
	if !ok {
		return "", "", false
	}
	slash := strings.LastIndexByte(rest, '/')
	if slash < 0 {
		return "", "", false
	}
	device, ok = strings.CutSuffix(rest[:slash], c.suffix)
	return device, rest[slash+1:], ok && device != ""
}

func (c cmdTemplate) reply(device string) string { return c.prefix + device + c.suffix + "/res" }

// command is a request received for a device.
type command struct {
	device, name string
	payload      []byte
}

// commandReply is the JSON reply to a command.
type commandReply struct {
	Cmd        string `json:"cmd"`
	ID         any    `json:"id,omitempty"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	IntervalMs *int64 `json:"interval_ms,omitempty"`
	TurnMs     *int64 `json:"turn_ms,omitempty"`
	Profile    string `json:"profile,omitempty"`
	Topic      string `json:"topic,omitempty"`
	TS         int64  `json:"ts"`
}

// handle applies cmd to the fleet and returns the reply, and the index of
// the device (-1 if there is none of that name).
func handleCommand(f *Fleet, cmd command, turnMs, tsMillis int64) (commandReply, int) {
	rep := commandReply{Cmd: cmd.name, TS: tsMillis}
	var req struct {
		ID         any    `json:"id"`
		IntervalMs *int64 `json:"interval_ms"`
	}
	i, ok := f.Index(cmd.device)
	if !ok {
		rep.Error = fmt.Sprintf("no device %q", cmd.device)
		return rep, -1
	}
	if p := bytes.TrimSpace(cmd.payload); len(p) > 0 {
		if err := json.Unmarshal(p, &req); err != nil {
			rep.Error = "bad request: " + err.Error()
			return rep, i
		}
	}
	rep.ID = req.ID
	switch cmd.name {
	case "set-interval":
		if req.IntervalMs == nil || *req.IntervalMs < 0 {
			rep.Error = "set-interval wants a non-negative interval_ms"
			return rep, i
		}
		f.SetInterval(i, *req.IntervalMs)
		fallthrough
	case "get-state":
		iv := f.Interval(i)
		rep.IntervalMs, rep.TurnMs = &iv, &turnMs
		rep.Profile, rep.Topic = f.Profile(i).String(), f.Topic(i)
	case "ping":
	default:
		rep.Error = fmt.Sprintf("unknown command %q (want set-interval, get-state or ping)", cmd.name)
		return rep, i
	}
	rep.OK = true
	return rep, i
}

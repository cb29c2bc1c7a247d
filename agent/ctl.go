package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.yaml.in/yaml/v3"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/control"
)

const ctlUsage = `usage: sluice ctl <command> [flags] [args]

fleet operator's tool for the control topics (see DESIGN.md "Remote configuration over MQTT"):
  keygen -out NAME                          write NAME.key (private, 0600) and NAME.pub (base64, for control.trusted_keys)
  sign -key NAME.key -version N (-gateway ID | -group G) [-o FILE] CONFIG
                                            turn a config file (YAML or JSON) into a signed desired document
  push [-wait ID,ID] DOC                    publish a desired document (retained) to its target and wait
                                            for config/reported with its version; exit 1 when rejected
  cmd -gateway ID [-key NAME.key] [-args JSON] NAME
                                            send a command, wait for its result; exit 1 unless it succeeded
  watch [-gateway ID] [-count N]            print status and health documents as they come

broker flags (every command but keygen and sign): -broker URL (default $SLUICE_BROKER or
tcp://127.0.0.1:1883), -username, -password-file, -prefix (default sluice/), -timeout (default 30s)
`

// Exit codes of sluice ctl.
const (
	ctlOK       = 0
	ctlRejected = 1 // rejected, failed, or invalid input
	ctlUsageErr = 2
	ctlTimeout  = 3 // no answer in time
)

// ctlMain runs `sluice ctl`.
func ctlMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return ctlUsageErr
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("ctl "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var b brokerFlags
	switch sub {
	case "keygen":
		out := fs.String("out", "sluice-ctl", "file name prefix: writes PREFIX.key and PREFIX.pub")
		if fs.Parse(args) != nil {
			return ctlUsageErr
		}
		return ctlKeygen(*out, stdout, stderr)
	case "sign":
		key := fs.String("key", "", "private key file (from keygen); without it the document is unsigned")
		ver := fs.Int64("version", 0, "document version, above the one applied (required)")
		gw := fs.String("gateway", "", "target gateway id")
		group := fs.String("group", "", "target group (sluice/group/<G>/config/desired)")
		out := fs.String("o", "", "output file (default stdout)")
		if fs.Parse(args) != nil {
			return ctlUsageErr
		}
		if fs.NArg() != 1 || *ver <= 0 || (*gw == "") == (*group == "") {
			fmt.Fprintln(stderr, "sluice ctl sign: need -version N>0, one of -gateway or -group, and one config file")
			return ctlUsageErr
		}
		return ctlSign(fs.Arg(0), *key, *ver, *gw, *group, *out, stdout, stderr)
	case "push":
		b.register(fs)
		wait := fs.String("wait", "", "for a group document: comma-separated gateways whose reports to wait for")
		if fs.Parse(args) != nil {
			return ctlUsageErr
		}
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "sluice ctl push: need one desired document (from sluice ctl sign)")
			return ctlUsageErr
		}
		return ctlPush(&b, fs.Arg(0), *wait, stdout, stderr)
	case "cmd":
		b.register(fs)
		gw := fs.String("gateway", "", "gateway id (required)")
		key := fs.String("key", "", "private key file to sign the request with")
		argsJSON := fs.String("args", "", "command arguments, a JSON object")
		if fs.Parse(args) != nil {
			return ctlUsageErr
		}
		if fs.NArg() != 1 || *gw == "" {
			fmt.Fprintln(stderr, "sluice ctl cmd: need -gateway and one command name ("+strings.Join(control.Commands, ", ")+")")
			return ctlUsageErr
		}
		return ctlCmd(&b, *gw, *key, *argsJSON, fs.Arg(0), stdout, stderr)
	case "watch":
		b.register(fs)
		gw := fs.String("gateway", "+", "gateway id (default: every gateway)")
		count := fs.Int("count", 0, "stop after this many documents (0: never)")
		if fs.Parse(args) != nil {
			return ctlUsageErr
		}
		if !b.timeoutSet.set {
			b.timeout = 0 // watch runs until interrupted unless -timeout is given
		}
		return ctlWatch(&b, *gw, *count, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, ctlUsage)
		return ctlOK
	}
	fmt.Fprintf(stderr, "sluice ctl: unknown command %q\n\n%s", sub, ctlUsage)
	return ctlUsageErr
}

// brokerFlags are the connection flags shared by push, cmd and watch.
type brokerFlags struct {
	url, username, passwordFile, prefix string
	timeout                             time.Duration
	timeoutSet                          setFlag
}

// setFlag is a duration flag.Value that records whether it was given.
type setFlag struct {
	d   *time.Duration
	set bool
}

func (s *setFlag) String() string {
	if s.d == nil {
		return "30s"
	}
	return s.d.String()
}
func (s *setFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	*s.d, s.set = d, true
	return err
}

func (b *brokerFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("SLUICE_BROKER")
	if def == "" {
		def = "tcp://127.0.0.1:1883"
	}
	fs.StringVar(&b.url, "broker", def, "MQTT broker URL")
	fs.StringVar(&b.username, "username", "", "MQTT user name")
	fs.StringVar(&b.passwordFile, "password-file", "", "file holding the MQTT password")
	fs.StringVar(&b.prefix, "prefix", "sluice/", "topic root: a gateway's prefix is <root><gateway>/")
	b.timeout = 30 * time.Second
	b.timeoutSet.d = &b.timeout
	fs.Var(&b.timeoutSet, "timeout", "how long to wait for the answer")
}

func (b *brokerFlags) connect() (mqtt.Client, error) {
	id := make([]byte, 6)
	rand.Read(id)
	o := mqtt.NewClientOptions().AddBroker(b.url).SetClientID("sluice-ctl-" + hex.EncodeToString(id)).
		SetCleanSession(true).SetOrderMatters(true).SetConnectTimeout(10 * time.Second)
	if b.username != "" {
		o.SetUsername(b.username)
		if b.passwordFile != "" {
			p, err := os.ReadFile(b.passwordFile)
			if err != nil {
				return nil, fmt.Errorf("read password: %w", err)
			}
			o.SetPassword(strings.TrimRight(string(p), "\r\n"))
		}
	}
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: no answer within 15s", b.url)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", b.url, err)
	}
	return c, nil
}

// ctlSubscribe sends every message on filter to the returned channel.
func ctlSubscribe(c mqtt.Client, filter string) (<-chan mqtt.Message, error) {
	ch := make(chan mqtt.Message, 256)
	t := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- m })
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("subscribe %s: %v", filter, t.Error())
	}
	return ch, nil
}

func ctlPublish(c mqtt.Client, topic string, retained bool, payload []byte) error {
	t := c.Publish(topic, 1, retained, payload)
	if !t.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish %s: no PUBACK within 10s", topic)
	}
	return t.Error()
}

func ctlKeygen(prefix string, stdout, stderr io.Writer) int {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	pubB64 := base64.StdEncoding.EncodeToString(pub)
	if err := os.WriteFile(prefix+".key", []byte(base64.StdEncoding.EncodeToString(priv)+"\n"), 0o600); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	if err := os.WriteFile(prefix+".pub", []byte(pubB64+"\n"), 0o644); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	fmt.Fprintf(stdout, "wrote %s.key (keep it secret) and %s.pub\nadd to the gateways' local config:\n  control:\n    trusted_keys: [%s]\n", prefix, prefix, pubB64)
	return ctlOK
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return control.ParsePrivateKey(string(b))
}

// ctlSign reads a config file (YAML or JSON), checks it with the real
// validation and writes the desired document.
func ctlSign(path, keyFile string, version int64, gateway, group, out string, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil || cfg == nil {
		fmt.Fprintf(stderr, "%s: not a config (YAML or JSON object): %v\n", path, err)
		return ctlRejected
	}
	if _, ok := cfg["control"]; ok {
		fmt.Fprintf(stderr, "%s: the control section is read from each gateway's local file only; remove it\n", path)
		return ctlRejected
	}
	// Validate as the gateway will (its gateway id filled in when absent).
	check := map[string]any{}
	for k, v := range cfg {
		check[k] = v
	}
	if _, ok := check["gateway"]; !ok {
		check["gateway"] = map[bool]string{true: gateway, false: "group-member"}[gateway != ""]
	}
	cj, err := json.Marshal(check)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return ctlRejected
	}
	if _, err := config.Parse(cj); err != nil {
		fmt.Fprintf(stderr, "%s: invalid config:\n%v\n", path, err)
		return ctlRejected
	}
	target := gateway
	if group != "" {
		target = "group/" + group
	}
	doc, err := json.Marshal(map[string]any{"version": version, "issued_at": time.Now().UTC().Format(time.RFC3339),
		"target": target, "config": cfg})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return ctlRejected
	}
	if keyFile != "" {
		key, err := readPrivateKey(keyFile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return ctlRejected
		}
		if doc, err = control.Sign(doc, key); err != nil {
			fmt.Fprintln(stderr, err)
			return ctlRejected
		}
	} else if doc, err = control.Canonical(doc); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	doc = append(doc, '\n')
	if out == "" {
		stdout.Write(doc)
		return ctlOK
	}
	if err := os.WriteFile(out, doc, 0o644); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	return ctlOK
}

func ctlPush(b *brokerFlags, path, wait string, stdout, stderr io.Writer) int {
	doc, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	doc = bytes.TrimSpace(doc)
	var d control.Desired
	if err := json.Unmarshal(doc, &d); err != nil || d.Version <= 0 || d.Target == "" || len(d.Config) == 0 {
		fmt.Fprintf(stderr, "%s: not a desired document with version, target and config (make one with sluice ctl sign): %v\n", path, err)
		return ctlRejected
	}
	var topic string
	var gateways []string
	if g, ok := strings.CutPrefix(d.Target, "group/"); ok {
		topic = control.GroupDesiredTopic(g)
		for _, gw := range strings.Split(wait, ",") {
			if gw = strings.TrimSpace(gw); gw != "" {
				gateways = append(gateways, gw)
			}
		}
	} else {
		topic = b.prefix + d.Target + "/config/desired"
		gateways = []string{d.Target}
	}
	c, err := b.connect()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	defer c.Disconnect(250)
	reports := map[string]<-chan mqtt.Message{}
	for _, gw := range gateways { // subscribe first: a fast answer must not be missed
		if reports[gw], err = ctlSubscribe(c, b.prefix+gw+"/config/reported"); err != nil {
			fmt.Fprintln(stderr, err)
			return ctlRejected
		}
	}
	if err := ctlPublish(c, topic, true, doc); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	fmt.Fprintf(stdout, "published version %d to %s\n", d.Version, topic)
	code := ctlOK
	deadline := time.After(b.timeout)
	for _, gw := range gateways {
		r, ok := waitReport(reports[gw], d.Version, deadline)
		if !ok {
			fmt.Fprintf(stdout, "%s: no report of version %d within %s\n", gw, d.Version, b.timeout)
			code = max(code, ctlTimeout)
			continue
		}
		if r.Status == control.StatusApplied {
			fmt.Fprintf(stdout, "%s: applied version %d (config %.12s)\n", gw, r.AppliedVersion, r.ConfigHash)
			continue
		}
		fmt.Fprintf(stdout, "%s: rejected version %d (running version %d)\n", gw, d.Version, r.AppliedVersion)
		for _, e := range r.Errors {
			fmt.Fprintf(stdout, "  %s: %s\n", e.Path, e.Msg)
		}
		if code == ctlOK {
			code = ctlRejected
		}
	}
	return code
}

func waitReport(ch <-chan mqtt.Message, version int64, deadline <-chan time.Time) (control.Reported, bool) {
	for {
		select {
		case m := <-ch:
			var r control.Reported
			if json.Unmarshal(m.Payload(), &r) == nil && r.Version == version {
				return r, true
			}
		case <-deadline:
			return control.Reported{}, false
		}
	}
}

func ctlCmd(b *brokerFlags, gateway, keyFile, args, name string, stdout, stderr io.Writer) int {
	idb := make([]byte, 8)
	rand.Read(idb)
	req := map[string]any{"id": hex.EncodeToString(idb), "name": name, "target": gateway,
		"expires_at": time.Now().Add(b.timeout).UTC().Format(time.RFC3339Nano)}
	if args != "" {
		if !json.Valid([]byte(args)) {
			fmt.Fprintln(stderr, "sluice ctl cmd: -args is not JSON")
			return ctlUsageErr
		}
		req["args"] = json.RawMessage(args)
	}
	payload, err := json.Marshal(req)
	if err == nil && keyFile != "" {
		var key ed25519.PrivateKey
		if key, err = readPrivateKey(keyFile); err == nil {
			payload, err = control.Sign(payload, key)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	c, err := b.connect()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	defer c.Disconnect(250)
	prefix := b.prefix + gateway + "/cmd/" + name
	res, err := ctlSubscribe(c, prefix+"/res")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	if err := ctlPublish(c, prefix+"/req", false, payload); err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	deadline := time.After(b.timeout)
	for {
		select {
		case m := <-res:
			var r struct {
				ID     string          `json:"id"`
				Status string          `json:"status"`
				Detail json.RawMessage `json:"detail"`
			}
			if json.Unmarshal(m.Payload(), &r) != nil || r.ID != req["id"] || r.Status == control.CmdAccepted {
				continue
			}
			fmt.Fprintf(stdout, "%s %s %s\n", gateway, name, r.Status)
			if len(r.Detail) > 0 {
				var pretty bytes.Buffer
				if json.Indent(&pretty, r.Detail, "", "  ") == nil {
					fmt.Fprintln(stdout, pretty.String())
				}
			}
			if r.Status == control.CmdSucceeded {
				return ctlOK
			}
			return ctlRejected
		case <-deadline:
			fmt.Fprintf(stderr, "%s %s: no result within %s\n", gateway, name, b.timeout)
			return ctlTimeout
		}
	}
}

// ctlWatch prints one line per status or health document:
//
//	gw-01 status ready boot_seq=3 version=v0.4.0 config_version=7
//	gw-01 health {"time":...,"host":{...},"agent":{...},"buffer":{...}}
func ctlWatch(b *brokerFlags, gateway string, count int, stdout, stderr io.Writer) int {
	c, err := b.connect()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	defer c.Disconnect(250)
	status, err := ctlSubscribe(c, b.prefix+gateway+"/status")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	health, err := ctlSubscribe(c, b.prefix+gateway+"/health")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ctlRejected
	}
	var deadline <-chan time.Time
	if b.timeout > 0 {
		deadline = time.After(b.timeout)
	}
	gw := func(topic string) string {
		parts := strings.Split(strings.TrimPrefix(topic, b.prefix), "/")
		return parts[0]
	}
	for n := 0; count == 0 || n < count; n++ {
		select {
		case m := <-status:
			var s control.Status
			if err := json.Unmarshal(m.Payload(), &s); err != nil {
				fmt.Fprintf(stdout, "%s status (unreadable: %v)\n", gw(m.Topic()), err)
				continue
			}
			line := fmt.Sprintf("%s status %s", gw(m.Topic()), s.State)
			if s.State != "lost" {
				line += fmt.Sprintf(" boot_seq=%d version=%s config_version=%d", s.BootSeq, s.Version, s.ConfigVersion)
			}
			fmt.Fprintln(stdout, line)
		case m := <-health:
			var compact bytes.Buffer
			if json.Compact(&compact, m.Payload()) != nil {
				compact.Reset()
				compact.WriteString("(unreadable)")
			}
			fmt.Fprintf(stdout, "%s health %s\n", gw(m.Topic()), compact.String())
		case <-deadline:
			return ctlOK
		}
	}
	return ctlOK
}

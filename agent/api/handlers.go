package api

import (
	"bufio"
	"encoding/json"
	"net/http"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// snapshot returns the source's status with the rates and runtime filled in.
func (s *Server) snapshot() Status {
	st := s.src.Status()
	if st.Time.IsZero() {
		st.Time = time.Now()
	}
	s.rates.fill(&st)
	st.Runtime = readRuntime()
	return st
}

func readRuntime() Runtime {
	samples := []metrics.Sample{{Name: "/sched/goroutines:goroutines"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/sched/gomaxprocs:threads"}}
	metrics.Read(samples)
	var r Runtime
	if samples[0].Value.Kind() == metrics.KindUint64 {
		r.Goroutines = int(samples[0].Value.Uint64())
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		r.HeapBytes = samples[1].Value.Uint64()
	}
	if samples[2].Value.Kind() == metrics.KindUint64 {
		r.Procs = int(samples[2].Value.Uint64())
	}
	return r
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v) // the client went away if this fails
}

// healthz answers 200 while the process serves requests.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readyz answers 200 when every input is subscribed and the buffer is open,
// 503 with what is missing otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	st := s.src.Status()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if st.Ready {
		w.Write([]byte("ready\n"))
		return
	}
	var why []string
	if !st.Buffer.Open {
		why = append(why, "buffer not open")
	}
	for _, in := range st.Inputs {
		if !in.Subscribed {
			why = append(why, "input "+in.Name+" not subscribed")
		}
	}
	if len(why) == 0 {
		why = append(why, "starting")
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte("not ready: " + strings.Join(why, ", ") + "\n"))
}

// metrics writes the Prometheus text format: the status families, the
// latency histograms, then the Go runtime's go_* and process_* families.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	st := s.src.Status()
	for _, u := range st.Uplinks {
		s.hists.endToEnd(u.Name) // every uplink has its histogram, observed or not
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := writeStatusMetrics(w, &st); err != nil {
		return
	}
	writeHistograms(w, s.set)
	vm.WriteProcessMetrics(w)
}

// status serves the health document.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.snapshot())
}

// RuleView is a rule in /api/v1/rules: its counters, rates and last outputs
// (oldest first).
type RuleView struct {
	Rule
	LastOutputs []Output `json:"last_outputs"`
}

// rules serves the rules with their rates and last outputs; ?rule=name
// (repeatable, or comma-separated) selects some.
func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	st := s.snapshot()
	want := ruleFilter(r)
	out := struct {
		Rules []RuleView `json:"rules"`
	}{Rules: []RuleView{}}
	for _, ru := range st.Rules {
		if want != nil && !want[ru.Name] {
			continue
		}
		out.Rules = append(out.Rules, RuleView{Rule: ru, LastOutputs: s.outs.last(ru.Name)})
	}
	writeJSON(w, out)
}

func ruleFilter(r *http.Request) map[string]bool {
	var m map[string]bool
	for _, v := range r.URL.Query()["rule"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[name] = true
			}
		}
	}
	return m
}

// deadLetters serves the recent dead letters, newest first, with each
// input's total; ?input=name selects one input.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	st := s.src.Status()
	s.dead.observe(st.Inputs)
	input := r.URL.Query().Get("input")
	type total struct {
		Input       string `json:"input"`
		DeadLetters uint64 `json:"dead_letters"`
	}
	out := struct {
		Totals  []total      `json:"totals"`
		Samples []DeadLetter `json:"samples"`
	}{Totals: []total{}, Samples: []DeadLetter{}}
	for _, in := range st.Inputs {
		if input == "" || in.Name == input {
			out.Totals = append(out.Totals, total{in.Name, in.DeadLetters})
		}
	}
	for _, dl := range s.dead.list() {
		if input == "" || dl.Input == input {
			out.Samples = append(out.Samples, dl)
		}
	}
	writeJSON(w, out)
}

// keepAlive is how often an idle stream gets a comment line, so proxies and
// clients see it alive.
const keepAlive = 15 * time.Second

// streamOutputs serves server-sent events of outputs as they are committed:
// "event: output" with the seq as id and the upstream envelope as data,
// "event: dropped" with {"dropped":n} when the client fell behind and missed
// n outputs. ?rule=name (repeatable or comma-separated) selects rules. The
// first line, a comment, is sent once the subscription is in place.
func (s *Server) streamOutputs(w http.ResponseWriter, r *http.Request) {
	rules := make([]string, 0)
	for name := range ruleFilter(r) {
		rules = append(rules, name)
	}
	sub := s.stream.subscribe(rules)
	if sub == nil {
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return
	}
	defer s.stream.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	bw := bufio.NewWriter(w)
	bw.WriteString(": subscribed\n\n")
	if bw.Flush() != nil || rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			bw.WriteString(": keep-alive\n\n")
		case ev, ok := <-sub.events:
			if !ok {
				return
			}
			if n := sub.takeDropped(); n > 0 {
				bw.WriteString("event: dropped\ndata: {\"dropped\":" + strconv.FormatUint(n, 10) + "}\n\n")
			}
			writeEvent(bw, ev)
			// Send what else is queued in the same flush.
			for more := true; more; {
				select {
				case ev, ok := <-sub.events:
					if !ok {
						bw.Flush()
						rc.Flush()
						return
					}
					writeEvent(bw, ev)
				default:
					more = false
				}
			}
		}
		if bw.Flush() != nil || rc.Flush() != nil {
			return
		}
	}
}

// writeEvent writes one output event; the envelope is one line of JSON.
func writeEvent(w *bufio.Writer, envelope []byte) {
	w.WriteString("event: output\nid: ")
	w.WriteString(strconv.FormatUint(seqOf(envelope), 10))
	w.WriteString("\ndata: ")
	w.Write(envelope)
	w.WriteString("\n\n")
}

// seqOf reads the seq of an envelope, which starts
// {"gateway":"...","seq":N.
func seqOf(env []byte) uint64 {
	const key = `,"seq":`
	i := strings.Index(string(env), key)
	if i < 0 {
		return 0
	}
	var n uint64
	for _, c := range env[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

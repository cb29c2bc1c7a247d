package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPOptions configure an HTTP input.
type HTTPOptions struct {
	Input   int    // index stamped on every Message
	Name    string // the input's name: the handler serves POST /ingest/<Name>
	MaxBody int64  // largest request body in bytes; 0 means 1 MiB
	// AckTimeout bounds the time from the request to the commit that covers
	// all of its messages (sending them under backpressure included); past it
	// the response is 503. 0 means 30s.
	AckTimeout time.Duration
	Logger     *slog.Logger
}

// DefaultHTTPMaxBody is the body limit when HTTPOptions.MaxBody is 0.
const DefaultHTTPMaxBody = 1 << 20

// HTTP is an input for local devices and services that POST JSON: one object,
// or NDJSON (one object a line). It is an http.Handler for
// POST /ingest/<name>, mounted by the agent on its local listener, and a
// source (Start, Close) like the others.
//
// Each line of a request becomes one Message, whose Acker counts down the
// request's outstanding messages: the response (202 {"accepted":N}) is
// written only once the pipeline acked every one of them, that is after the
// commit that covers them. The whole body is checked before anything is
// sent, so a rejected request (400, 413) sends nothing. A request that cannot
// be handed to the pipeline and committed within AckTimeout gets 503; the
// messages it already sent are still committed, so a client that retries
// gets them at least once.
type HTTP struct {
	opts  HTTPOptions
	log   *slog.Logger
	path  string
	topic string

	mu      sync.Mutex
	out     chan<- Message
	ctx     context.Context
	started bool
	closed  bool

	Requests atomic.Uint64 // requests answered 202
	Accepted atomic.Uint64 // messages in them
	Rejected atomic.Uint64 // requests answered 400 or 413
	Timeouts atomic.Uint64 // requests answered 503
}

// NewHTTP returns an HTTP input; it answers 503 until Start.
func NewHTTP(opts HTTPOptions) *HTTP {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultHTTPMaxBody
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &HTTP{
		opts:  opts,
		log:   log.With("input", opts.Name),
		path:  "/ingest/" + opts.Name,
		topic: "http/" + opts.Name,
	}
}

// Path is the path the handler serves: /ingest/<name>.
func (h *HTTP) Path() string { return h.path }

// Start lets the handler send to out until ctx ends or Close is called. It
// does not listen: the agent mounts the handler on its local listener.
func (h *HTTP) Start(ctx context.Context, out chan<- Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out, h.ctx, h.started = out, ctx, true
	return nil
}

// Close makes the handler answer 503 to new requests. Requests waiting for
// their commit keep waiting (until the Start context ends or AckTimeout), so
// call it before stopping the pipeline, as with the other sources.
func (h *HTTP) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// httpBatch is the Acker of every message of one request.
type httpBatch struct {
	left atomic.Int64
	done chan struct{}
}

func (b *httpBatch) Ack() {
	if b.left.Add(-1) == 0 {
		close(b.done)
	}
}

// ServeHTTP handles POST /ingest/<name>.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.path {
		httpError(w, http.StatusNotFound, "no input at "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST")
		return
	}
	h.mu.Lock()
	out, ctx, ok := h.out, h.ctx, h.started && !h.closed
	h.mu.Unlock()
	if !ok || ctx.Err() != nil {
		h.Timeouts.Add(1)
		httpError(w, http.StatusServiceUnavailable, "input not running")
		return
	}
	if r.ContentLength > h.opts.MaxBody {
		h.tooLarge(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBody))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			h.tooLarge(w)
			return
		}
		h.Rejected.Add(1)
		httpError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	lines, errLine, reason := splitJSON(body, isNDJSON(r.Header.Get("Content-Type")))
	if reason != "" {
		h.Rejected.Add(1)
		msg := reason
		if errLine > 0 {
			msg = "line " + strconv.Itoa(errLine) + ": " + reason
		}
		httpError(w, http.StatusBadRequest, msg)
		return
	}

	timer := time.NewTimer(h.opts.AckTimeout)
	defer timer.Stop()
	b := &httpBatch{done: make(chan struct{})}
	b.left.Store(int64(len(lines)))
	now := time.Now()
	for _, l := range lines {
		m := Message{Input: h.opts.Input, Topic: h.topic, Payload: l, Received: now, Acker: b}
		select {
		case out <- m:
			continue
		case <-timer.C:
		case <-r.Context().Done():
		case <-ctx.Done():
		}
		h.unavailable(w, "not accepted by the pipeline in time")
		return
	}
	select {
	case <-b.done:
	case <-timer.C:
		h.unavailable(w, "not committed in time")
		return
	case <-r.Context().Done():
		h.Timeouts.Add(1) // the client went away
		return
	case <-ctx.Done():
		h.unavailable(w, "input stopped")
		return
	}
	h.Requests.Add(1)
	h.Accepted.Add(uint64(len(lines)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	w.Write(strconv.AppendInt(append(make([]byte, 0, 32), `{"accepted":`...), int64(len(lines)), 10))
	w.Write([]byte("}\n"))
}

func (h *HTTP) tooLarge(w http.ResponseWriter) {
	h.Rejected.Add(1)
	httpError(w, http.StatusRequestEntityTooLarge, "body exceeds "+strconv.FormatInt(h.opts.MaxBody, 10)+" bytes")
}

func (h *HTTP) unavailable(w http.ResponseWriter, reason string) {
	h.Timeouts.Add(1)
	w.Header().Set("Retry-After", "1")
	httpError(w, http.StatusServiceUnavailable, reason)
}

// httpError writes {"error":"..."}.
func httpError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func isNDJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonlines", "application/x-jsonlines":
		return true
	}
	return false
}

// splitJSON splits a body into JSON objects: the whole body when it is one
// object (which may span lines) and ndjson is false, else one object a
// non-blank line. The slices share body's memory. On failure it returns the
// 1-based line number (0 for the body as a whole) and the reason.
func splitJSON(body []byte, ndjson bool) (objs [][]byte, line int, reason string) {
	if !ndjson {
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' && json.Valid(t) {
			return [][]byte{t}, 0, ""
		}
	}
	n := 0
	for rest := body; len(rest) > 0; {
		var l []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			l, rest = rest, nil
		}
		n++
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if r := objectError(l); r != "" {
			return nil, n, r
		}
		objs = append(objs, l)
	}
	if len(objs) == 0 {
		return nil, 0, "empty body: expected a JSON object or NDJSON"
	}
	return objs, 0, ""
}

// objectError says why l is not one JSON object, or "" when it is.
func objectError(l []byte) string {
	if json.Valid(l) {
		if l[0] == '{' {
			return ""
		}
		return "not a JSON object"
	}
	var v json.RawMessage // only to get the reason
	if err := json.Unmarshal(l, &v); err != nil {
		return "invalid JSON: " + err.Error()
	}
	return "invalid JSON"
}

package ingest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type httpResult struct {
	code int
	body string
	err  error
}

// startHTTP starts an HTTP input behind an httptest.Server; the test reads
// out, standing in for the pipeline.
func startHTTP(t *testing.T, opts HTTPOptions) (*HTTP, *httptest.Server, chan Message) {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "dev"
	}
	h := NewHTTP(opts)
	out := make(chan Message, 16)
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.Start(ctx, out); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		cancel()
		h.Close()
		srv.Close()
	})
	return h, srv, out
}

func post(url, contentType, body string) <-chan httpResult {
	res := make(chan httpResult, 1)
	go func() {
		resp, err := http.Post(url, contentType, strings.NewReader(body))
		if err != nil {
			res <- httpResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- httpResult{code: resp.StatusCode, body: string(b), err: err}
	}()
	return res
}

func wait(t *testing.T, res <-chan httpResult) httpResult {
	t.Helper()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
	}
	return httpResult{}
}

func receive(t *testing.T, out <-chan Message, n int) []Message {
	t.Helper()
	var ms []Message
	for len(ms) < n {
		select {
		case m := <-out:
			ms = append(ms, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d messages, want %d", len(ms), n)
		}
	}
	return ms
}

func TestHTTPRespondsOnlyAfterAcks(t *testing.T) {
	h, srv, out := startHTTP(t, HTTPOptions{Input: 3, Name: "dev"})
	release := make(chan struct{})
	acked := make(chan struct{})
	go func() { // the pipeline: acks only once released (its commit)
		m := <-out
		<-release
		m.Acker.Ack()
		close(acked)
	}()
	res := post(srv.URL+"/ingest/dev", "application/json", `{"t": 21.5, "dev": "a"}`)
	select {
	case r := <-res:
		t.Fatalf("response before the ack: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	r := wait(t, res)
	select {
	case <-acked:
	default:
		t.Fatal("response without the ack")
	}
	if r.code != http.StatusAccepted || strings.TrimSpace(r.body) != `{"accepted":1}` {
		t.Fatalf("got %d %q", r.code, r.body)
	}
	if h.Requests.Load() != 1 || h.Accepted.Load() != 1 {
		t.Fatalf("requests %d accepted %d", h.Requests.Load(), h.Accepted.Load())
	}
}

func TestHTTPMessageFields(t *testing.T) {
	_, srv, out := startHTTP(t, HTTPOptions{Input: 3, Name: "dev"})
	got := make(chan Message, 1)
	go func() {
		m := <-out
		got <- m
		m.Acker.Ack()
	}()
	before := time.Now()
	// One object over several lines (no NDJSON content type) is one message.
	r := wait(t, post(srv.URL+"/ingest/dev", "application/json", "{\n  \"t\": 1,\n  \"u\": \"C\"\n}\n"))
	if r.code != http.StatusAccepted {
		t.Fatalf("got %d %q", r.code, r.body)
	}
	m := <-got
	if m.Input != 3 || m.Topic != "http/dev" || m.Received.Before(before) || m.Position != nil {
		t.Fatalf("message %+v", m)
	}
	var v map[string]any
	if err := json.Unmarshal(m.Payload, &v); err != nil || v["u"] != "C" {
		t.Fatalf("payload %q: %v", m.Payload, err)
	}
}

func TestHTTPNDJSON(t *testing.T) {
	for _, ct := range []string{"application/x-ndjson", "application/json", ""} {
		t.Run(ct, func(t *testing.T) {
			_, srv, out := startHTTP(t, HTTPOptions{Name: "dev"})
			got := make(chan []Message, 1)
			go func() {
				ms := []Message{<-out, <-out, <-out}
				for _, m := range ms { // acked together, as one commit would
					m.Acker.Ack()
				}
				got <- ms
			}()
			body := "{\"n\":1}\r\n\n{\"n\":2}\n   \n{\"n\":3}" // blank lines skipped, no final newline
			r := wait(t, post(srv.URL+"/ingest/dev", ct, body))
			if r.code != http.StatusAccepted || strings.TrimSpace(r.body) != `{"accepted":3}` {
				t.Fatalf("got %d %q", r.code, r.body)
			}
			ms := <-got
			for i, m := range ms {
				if want := `{"n":` + string(rune('1'+i)) + `}`; string(m.Payload) != want {
					t.Errorf("message %d payload %q, want %q", i, m.Payload, want)
				}
			}
			select {
			case m := <-out:
				t.Fatalf("extra message %q", m.Payload)
			default:
			}
		})
	}
}

func TestHTTPRejects(t *testing.T) {
	h, srv, out := startHTTP(t, HTTPOptions{Name: "dev", MaxBody: 64})
	cases := []struct {
		name, ct, body string
		code           int
		want           string
	}{
		{"too large", "application/json", `{"x":"` + strings.Repeat("a", 100) + `"}`, 413, "exceeds 64"},
		{"bad line", "application/x-ndjson", "{\"a\":1}\n{\"a\":2}\n{\"a\":\n", 400, "line 3: invalid JSON"},
		{"not an object", "application/x-ndjson", "{\"a\":1}\n[1,2]\n", 400, "line 2: not a JSON object"},
		{"bad single", "application/json", `{"a":`, 400, "line 1: invalid JSON"},
		{"two objects on a line", "", `{"a":1}{"b":2}`, 400, "line 1: invalid JSON"},
		{"empty", "application/json", "\n \n", 400, "empty body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := wait(t, post(srv.URL+"/ingest/dev", c.ct, c.body))
			if r.code != c.code || !strings.Contains(r.body, c.want) {
				t.Fatalf("got %d %q, want %d with %q", r.code, r.body, c.code, c.want)
			}
		})
	}
	// Chunked (no Content-Length) and still too large.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"x":"` + strings.Repeat("a", 200) + `"}`))
		pw.Close()
	}()
	resp, err := http.Post(srv.URL+"/ingest/dev", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized: %d", resp.StatusCode)
	}

	resp, err = http.Get(srv.URL + "/ingest/dev")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if r := wait(t, post(srv.URL+"/ingest/other", "application/json", `{}`)); r.code != 404 {
		t.Fatalf("other input: %d", r.code)
	}
	select {
	case m := <-out:
		t.Fatalf("a rejected request sent %q", m.Payload)
	default:
	}
	if h.Rejected.Load() != 7 {
		t.Fatalf("rejected %d, want 7", h.Rejected.Load())
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Run("no ack", func(t *testing.T) {
		h, srv, out := startHTTP(t, HTTPOptions{Name: "dev", AckTimeout: 100 * time.Millisecond})
		res := post(srv.URL+"/ingest/dev", "application/x-ndjson", "{\"a\":1}\n{\"a\":2}\n")
		ms := receive(t, out, 2)
		ms[0].Acker.Ack() // one of two: the commit never covers the other
		r := wait(t, res)
		if r.code != 503 || !strings.Contains(r.body, "not committed") {
			t.Fatalf("got %d %q", r.code, r.body)
		}
		ms[1].Acker.Ack() // a late ack is harmless
		if h.Timeouts.Load() != 1 || h.Requests.Load() != 0 {
			t.Fatalf("timeouts %d requests %d", h.Timeouts.Load(), h.Requests.Load())
		}
	})
	t.Run("backpressure", func(t *testing.T) {
		h := NewHTTP(HTTPOptions{Name: "dev", AckTimeout: 100 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		h.Start(ctx, make(chan Message)) // nobody reads
		srv := httptest.NewServer(h)
		defer srv.Close()
		r := wait(t, post(srv.URL+"/ingest/dev", "application/json", `{"a":1}`))
		if r.code != 503 || !strings.Contains(r.body, "not accepted") {
			t.Fatalf("got %d %q", r.code, r.body)
		}
	})
	t.Run("not started or closed", func(t *testing.T) {
		h := NewHTTP(HTTPOptions{Name: "dev"})
		srv := httptest.NewServer(h)
		defer srv.Close()
		if r := wait(t, post(srv.URL+"/ingest/dev", "application/json", `{"a":1}`)); r.code != 503 {
			t.Fatalf("before Start: %d", r.code)
		}
		h.Start(context.Background(), make(chan Message, 1))
		h.Close()
		if r := wait(t, post(srv.URL+"/ingest/dev", "application/json", `{"a":1}`)); r.code != 503 {
			t.Fatalf("after Close: %d", r.code)
		}
	})
}

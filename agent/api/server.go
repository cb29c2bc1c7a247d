// Package api is the agent's local HTTP server: liveness and readiness
// probes, Prometheus metrics, the status, rules, dead-letter and output-stream
// JSON API, and a dashboard page embedded in the binary.
//
// The server knows the running agent only through a Source, which it asks for
// a Status on every request, scrape and rate sample, and through the hooks the
// agent calls as things happen: Committed after each group commit, Acked after
// an uplink acknowledged entries, DeadLetter when an input rejects a message.
//
// Access. On a loopback address no credentials are needed. On any other
// address New requires a bearer token (compared in constant time) or TLS with
// client certificates; then only /healthz and the dashboard's static files,
// which hold no data, are served without the token.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// ErrUnprotected is returned by New for a non-loopback listen address
// without a token or client certificates.
var ErrUnprotected = errors.New("a non-loopback API address needs a token or TLS client certificates")

// DefaultListen is the address the server binds unless told otherwise.
const DefaultListen = "127.0.0.1:8080"

// Defaults of the samples behind the rates.
const (
	DefaultSampleInterval = time.Second
	DefaultRateWindow     = 10 * time.Second
)

// Server serves the API. Its methods are safe for concurrent use; the hooks
// (Committed, Acked, DeadLetter) never block on clients.
type Server struct {
	cfg     config
	src     Source
	log     *slog.Logger
	set     *metrics.Set
	hists   *histograms
	rates   *sampler
	dead    *deadLetters
	outs    *outputs
	stream  *hub
	uiFiles http.Handler
	ingestH atomic.Pointer[http.Handler] // POST /ingest/<input>

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	done    chan struct{}
	started bool
}

type config struct {
	listen         string
	token          string
	tls            *tls.Config
	gateway        string
	log            *slog.Logger
	sampleInterval time.Duration
	rateWindow     time.Duration
}

// Option configures New.
type Option func(*config)

// WithListen sets the address (default 127.0.0.1:8080).
func WithListen(addr string) Option { return func(c *config) { c.listen = addr } }

// WithToken requires "Authorization: Bearer <token>" on every request but
// /healthz and the dashboard's static files. An empty token requires none.
// The token is never logged.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithTLS serves HTTPS with cfg. When cfg.ClientAuth is
// tls.RequireAndVerifyClientCert (see ServerTLS), client certificates are
// the credentials.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithGateway sets the gateway id written in the envelopes of the stream and
// the last outputs (as upstream sees them).
func WithGateway(id string) Option { return func(c *config) { c.gateway = id } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRates sets how often the server samples the counters and the window
// the rates are averaged over (defaults 1s and 10s; 0 keeps a default).
func WithRates(interval, window time.Duration) Option {
	return func(c *config) {
		if interval > 0 {
			c.sampleInterval = interval
		}
		if window > 0 {
			c.rateWindow = window
		}
	}
}

// New returns a server reading src. It binds nothing until Start. It returns
// an error wrapping ErrUnprotected when the listen address is not loopback
// and neither a token nor client certificates are configured.
func New(src Source, opts ...Option) (*Server, error) {
	c := config{listen: DefaultListen, sampleInterval: DefaultSampleInterval, rateWindow: DefaultRateWindow}
	for _, o := range opts {
		o(&c)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if src == nil {
		return nil, errors.New("api: nil status source")
	}
	if !Loopback(c.listen) && c.token == "" && !requiresClientCert(c.tls) {
		return nil, fmt.Errorf("api listen %s: %w", c.listen, ErrUnprotected)
	}
	set := metrics.NewSet()
	s := &Server{
		cfg:     c,
		src:     src,
		log:     c.log,
		set:     set,
		hists:   newHistograms(set),
		rates:   newSampler(c.rateWindow, c.sampleInterval),
		dead:    newDeadLetters(deadLetterSamples),
		outs:    newOutputs(c.gateway, lastOutputs),
		stream:  newHub(),
		uiFiles: newUIHandler(),
		done:    make(chan struct{}),
	}
	return s, nil
}

// Handler returns the server's routes, with authentication applied as for
// its listen address. Start serves it; tests may serve it themselves.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	open := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, h) }
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.authorize(h)) }
	open("GET /healthz", s.healthz)
	auth("GET /readyz", s.readyz)
	auth("GET /metrics", s.metrics)
	auth("GET /api/v1/status", s.status)
	auth("GET /api/v1/rules", s.rules)
	auth("GET /api/v1/deadletters", s.deadLetters)
	auth("GET /api/v1/stream", s.streamOutputs)
	auth("POST /ingest/", s.ingest)
	open("GET /", s.ui)
	return mux
}

// Start binds the listen address and serves in the background until ctx
// ends or Close is called; it also samples the counters for the rates. It
// returns the bind error, if any. Start may be called once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("api: started twice")
	}
	ln, err := net.Listen("tcp", s.cfg.listen)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", s.cfg.listen, err)
	}
	if s.cfg.tls != nil {
		ln = tls.NewListener(ln, s.cfg.tls)
	}
	s.started, s.ln = true, ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// No WriteTimeout: /api/v1/stream stays open.
	}
	s.log.Info("api listening", "addr", ln.Addr().String(), "tls", s.cfg.tls != nil, "token", s.cfg.token != "")
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	go s.sampleLoop(ctx)
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops the server: it ends the streams and closes the listener and
// connections, waiting up to a second for requests in flight. It is safe to
// call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	s.stream.close()
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// sampleLoop records the counters every sample interval until the server
// closes.
func (s *Server) sampleLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.sampleInterval)
	defer t.Stop()
	for {
		st := s.src.Status()
		s.rates.add(&st)
		s.dead.observe(st.Inputs)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// SetIngest sets the handler of POST /ingest/<input> (the HTTP inputs of
// the running config); nil answers 404. Safe to call while serving.
func (s *Server) SetIngest(h http.Handler) {
	if h == nil {
		s.ingestH.Store(nil)
		return
	}
	s.ingestH.Store(&h)
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	h := s.ingestH.Load()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	(*h).ServeHTTP(w, r)
}

package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/serve/gitserve"
	"github.com/ferry-gitops/ferry/serve/registry"
)

// ServerOptions configure a Server: what Handler protects it with, TLS, and where Git
// repositories are built.
type ServerOptions struct {
	Options
	// TLSCert and TLSKey are PEM files; plain HTTP without them.
	TLSCert, TLSKey string
	// GitWorkDir is where the server makes its private directory (0700, its own, removed by
	// Close) to build Git repositories from cached packs; default: the system's temporary
	// directory.
	GitWorkDir string
	// GitLimits bound what clients can make the Git remote do (concurrency, deadlines, the
	// objects a fetch may cost); zero fields take gitserve's defaults.
	GitLimits GitLimits
}

// GitLimits bound what clients can make the Git remote do; see gitserve.Limits.
type GitLimits = gitserve.Limits

// Server serves a snapshot of a cache's current bundle on one listener: the OCI registry under
// /v2/, the Git remote under /git/, and /healthz and /readyz. It is what 'sync serve' and 'sync
// run' run. Reload takes a new snapshot when an import committed another bundle.
type Server struct {
	cache *cache.Cache
	reg   *registry.Server
	git   *gitserve.Server
	opts  ServerOptions
	log   *slog.Logger

	// mu serialises Reload; served is the snapshot being served.
	mu     sync.Mutex
	served *cache.Snapshot
}

// NewServer takes a snapshot of the current bundle of c (opened with cache.OpenReader: serving
// takes no lock), indexes it and returns a server of it. An empty cache is served as an empty
// registry.
func NewServer(ctx context.Context, c *cache.Cache, o ServerOptions) (*Server, error) {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, fmt.Errorf("serve: give both a TLS certificate and its key, or neither")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	snap, err := c.Snapshot()
	if err != nil {
		return nil, err
	}
	reg, err := registry.New(ctx, snap, log)
	if err != nil {
		return nil, err
	}
	git, err := gitserve.NewWithLimits(ctx, snap, o.GitWorkDir, log, o.GitLimits)
	if err != nil {
		return nil, err
	}
	return &Server{cache: c, reg: reg, git: git, opts: o, log: log, served: snap}, nil
}

// Close removes what the server built (its Git work directory).
func (s *Server) Close() error { return s.git.Close() }

// Repositories lists the registry's repositories.
func (s *Server) Repositories() []string { return s.reg.Repositories() }

// Served returns the state (sequence and root) of the bundle being served.
func (s *Server) Served() cache.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served.State()
}

// Reload takes a snapshot of the cache's current bundle and serves it, if it is not the one
// served already. Requests in flight finish with the snapshot they started with.
func (s *Server) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := s.cache.Snapshot()
	if err != nil {
		return err
	}
	if snap.State() == s.served.State() {
		return nil
	}
	if err := errors.Join(s.reg.Reload(ctx, snap), s.git.Reload(ctx, snap)); err != nil {
		return fmt.Errorf("serve bundle %d: %w", snap.State().Sequence, err)
	}
	s.served = snap
	return nil
}

// Watch reloads whenever the cache's current bundle changes (another process imported one),
// checking every interval, until ctx is done.
func (s *Server) Watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reload after a new bundle", "err", err)
		}
	}
}

// Handler returns the server's HTTP handler, wrapped in Handler (authentication, rate limits,
// access log).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v2/", s.reg)
	mux.Handle("/git/", http.StripPrefix("/git", s.git))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// Ready once the current bundle is indexed, which NewServer did.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return Handler(mux, s.opts.Options)
}

// ListenAndServe listens on addr and serves until ctx is done; see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l (over TLS when the options name a certificate) until ctx is done, then
// shuts down gracefully, giving requests in flight up to 10 seconds. It closes l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return ServeHTTP(ctx, l, s.Handler(), s.opts.TLSCert, s.opts.TLSKey)
}

// ServeHTTP serves h on l (over TLS with certFile and keyFile, when given) until ctx is done,
// then shuts down gracefully, giving requests in flight up to 10 seconds. It closes l.
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler, certFile, keyFile string) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	var err error
	if certFile != "" {
		err = srv.ServeTLS(l, certFile, keyFile)
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		<-done // Shutdown has returned: requests in flight are finished
		return nil
	}
	return err
}

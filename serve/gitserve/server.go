package gitserve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// MaxRequestBody bounds an upload-pack request's body, before and after gzip decoding.
const MaxRequestBody = 10 << 20

// Limits bound what clients can make the server do. Zero fields take the defaults.
type Limits struct {
	// MaxConcurrent is how many requests are served at once, over all repositories (default 8);
	// MaxPerRepository how many for one repository (default 2). A request waits up to
	// QueueTimeout (default 5s) for its turn, then is answered 503 with Retry-After.
	MaxConcurrent, MaxPerRepository int
	QueueTimeout                    time.Duration
	// RequestTimeout bounds a request from its turn to its last byte written, reading the body
	// included (default 2m).
	RequestTimeout time.Duration
	// MaxObjects bounds the objects a fetch may make the server walk or pack (its haves and
	// their history, the commits within depth, what is sent), checked before anything is
	// encoded (default 200000). A whole clone (no haves, ofs-delta) is sent as it is stored and
	// costs nothing.
	MaxObjects int
	// MaxPackBytes bounds the size of the objects a fetch may have packed for it, as stored,
	// checked before anything is encoded (default 512 MiB): encoding holds them in memory.
	MaxPackBytes int64
	// PackCacheBytes bounds the cache of answers encoded for requests without haves (shallow
	// clones, as Flux makes on every reconcile), an answer at most an eighth of it (default
	// 64 MiB).
	PackCacheBytes int64
}

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = 8
	}
	if l.MaxPerRepository <= 0 {
		l.MaxPerRepository = 2
	}
	if l.QueueTimeout <= 0 {
		l.QueueTimeout = 5 * time.Second
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = 2 * time.Minute
	}
	if l.MaxObjects <= 0 {
		l.MaxObjects = 200000
	}
	if l.MaxPackBytes <= 0 {
		l.MaxPackBytes = 512 << 20
	}
	if l.PackCacheBytes <= 0 {
		l.PackCacheBytes = 64 << 20
	}
	return l
}

// Server serves the Git items of one snapshot of the cache. It is an http.Handler; Reload
// switches it to another snapshot while requests are being served.
type Server struct {
	// workDir is the server's private directory (see privateDir); lock holds it.
	workDir string
	lock    *os.File
	log     *slog.Logger
	limits  Limits

	// all holds a token per request served; perRepo one per request of a repository, by name.
	all     chan struct{}
	repoMu  sync.Mutex
	perRepo map[string]chan struct{}
	// packs caches answers encoded for requests without haves.
	packs *packCache

	// mu serialises Reload; built is only used under it.
	mu    sync.Mutex
	built map[digest.Digest]built

	current atomic.Pointer[repoSet]
}

// repoSet is what one Reload serves: the Git items of one bundle, by name.
type repoSet struct {
	sequence uint64
	repos    map[string]*repo
	packs    map[digest.Digest]bool
}

// New returns a server of the Git items of the snapshot's bundle. It builds their repositories
// in a private directory of its own (0700, created by this process) under workDir (the system's
// temporary directory when ""), never reusing what it finds there: another user or process could
// have put it there. A nil logger discards. Close removes the directory.
func New(ctx context.Context, snap *cache.Snapshot, workDir string, logger *slog.Logger) (*Server, error) {
	return NewWithLimits(ctx, snap, workDir, logger, Limits{})
}

// NewWithLimits is New with limits on what clients can make the server do.
func NewWithLimits(ctx context.Context, snap *cache.Snapshot, workDir string, logger *slog.Logger, limits Limits) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, lock, err := privateDir(workDir, logger)
	if err != nil {
		return nil, fmt.Errorf("git server: work directory: %w", err)
	}
	limits = limits.withDefaults()
	s := &Server{workDir: dir, lock: lock, log: logger, built: map[digest.Digest]built{}, limits: limits,
		all: make(chan struct{}, limits.MaxConcurrent), perRepo: map[string]chan struct{}{},
		packs: newPackCache(limits.PackCacheBytes)}
	s.current.Store(&repoSet{repos: map[string]*repo{}})
	if err := s.Reload(ctx, snap); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close removes the server's private directory. Requests still being served fail.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	err := os.RemoveAll(s.workDir)
	s.lock.Close()
	s.lock = nil
	return err
}

// WorkDir returns the server's private directory.
func (s *Server) WorkDir() string { return s.workDir }

// Reload serves the Git items of the snapshot's bundle, building the repositories of packs
// not built before. It replaces the served set at once. A Git item that cannot be served (not in
// Ferry's Git format) is logged and left out; the others are served.
func (s *Server) Reload(ctx context.Context, snap *cache.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := snap.Record()
	set := &repoSet{repos: map[string]*repo{}, packs: map[digest.Digest]bool{}}
	if rec != nil {
		set.sequence = rec.Sequence
		for _, item := range rec.Items {
			if item.Kind != bundle.KindGit {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := s.load(ctx, snap, item)
			if err != nil {
				// A Git item not in Ferry's Git format is not served; the rest of the bundle is.
				s.log.Error("git item not served", "bundle", rec.Sequence, "item", item.Name, "err", err)
				continue
			}
			set.repos[item.Name] = r
			set.packs[r.digest] = true
		}
	}
	old := s.current.Swap(set)
	s.prune(set.packs, old.packs)
	names := make([]string, 0, len(set.repos))
	for n := range set.repos {
		names = append(names, n)
	}
	sort.Strings(names)
	s.log.Info("serving git repositories", "bundle", set.sequence, "repositories", names)
	return nil
}

// prune removes the repositories of packs neither the set now served nor the one before it
// holds: the bundle that needed them is no longer served, and requests of the set before may
// still be reading its own.
func (s *Server) prune(current, previous map[digest.Digest]bool) {
	for d, b := range s.built {
		if current[d] || previous[d] {
			continue
		}
		if err := os.RemoveAll(b.dir); err != nil {
			s.log.Warn("removing a git repository no longer served", "pack", d, "err", err)
			continue
		}
		delete(s.built, d)
		s.log.Info("removed git repository no longer served", "pack", d)
	}
	s.packs.drop(func(d digest.Digest) bool { return current[d] || previous[d] })
}

// ServeHTTP answers Git's smart-HTTP upload-pack requests; see the package comment.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	s.serve(rw, r)
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	s.log.Info("git request", "method", r.Method, "path", r.URL.Path, "service", r.URL.Query().Get("service"),
		"status", rw.status, "bytes", rw.bytes, "duration", time.Since(start))
}

// Endpoints of a repository, after /<name>.git.
const (
	infoRefs    = "/info/refs"
	uploadPack  = "/git-upload-pack"
	receivePack = "/git-receive-pack"
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	var endpoint string
	for _, e := range []string{infoRefs, uploadPack, receivePack} {
		if strings.HasSuffix(path, ".git"+e) {
			endpoint = e
			path = strings.TrimSuffix(path, ".git"+e)
			break
		}
	}
	name := strings.TrimPrefix(path, "/")
	if endpoint == "" || name == "" || !strings.HasPrefix(path, "/") {
		plainError(w, http.StatusNotFound, "not found: Ferry serves Git repositories at /<name>.git (smart HTTP, upload-pack)")
		return
	}
	service := r.URL.Query().Get("service")
	if endpoint == receivePack || (endpoint == infoRefs && service == "git-receive-pack") {
		plainError(w, http.StatusForbidden, fmt.Sprintf("%s.git is read-only: Ferry serves what the bundle carries; push to the upstream repository and mirror again", name))
		return
	}
	set := s.current.Load()
	rp, ok := set.repos[name]
	if !ok {
		plainError(w, http.StatusNotFound, fmt.Sprintf("repository %s.git not found: bundle %d carries no Git item %q", name, set.sequence, name))
		return
	}
	release, ok := s.turn(r.Context(), name)
	if !ok {
		w.Header().Set("Retry-After", "5")
		plainError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s.git: busy, %d requests at once for it or %d over all repositories are served; retry later", name, s.limits.MaxPerRepository, s.limits.MaxConcurrent))
		return
	}
	defer release()
	// From its turn on, a request has RequestTimeout to be read and answered.
	deadline := time.Now().Add(s.limits.RequestTimeout)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(deadline) // errors: a writer without deadlines (a test recorder)
	rc.SetWriteDeadline(deadline)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	r = r.WithContext(ctx)
	switch endpoint {
	case infoRefs:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plainError(w, http.StatusMethodNotAllowed, "info/refs takes GET")
			return
		}
		if service != "git-upload-pack" {
			plainError(w, http.StatusNotFound, "not found: Ferry serves Git's smart HTTP protocol only (info/refs?service=git-upload-pack)")
			return
		}
		s.advertise(r.Context(), w, rp)
	case uploadPack:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			plainError(w, http.StatusMethodNotAllowed, "git-upload-pack takes POST")
			return
		}
		s.uploadPack(w, r, rp)
	}
}

// turn waits, up to QueueTimeout, for a request of repository name to be served within the
// limits; it returns the function that ends the request's turn, or false when it is not its
// turn in time.
func (s *Server) turn(ctx context.Context, name string) (func(), bool) {
	s.repoMu.Lock()
	sem, ok := s.perRepo[name]
	if !ok {
		sem = make(chan struct{}, s.limits.MaxPerRepository)
		s.perRepo[name] = sem
	}
	s.repoMu.Unlock()
	wait := time.NewTimer(s.limits.QueueTimeout)
	defer wait.Stop()
	select {
	case sem <- struct{}{}:
	case <-wait.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
	select {
	case s.all <- struct{}{}:
	case <-wait.C:
		<-sem
		return nil, false
	case <-ctx.Done():
		<-sem
		return nil, false
	}
	return func() { <-s.all; <-sem }, true
}

// plainError writes a plain-text error, which git shows its user as "remote: …".
func plainError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	noCache(h)
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// noCache sets the headers git http-backend sets so no proxy caches an answer.
func noCache(h http.Header) {
	h.Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
	h.Set("Pragma", "no-cache")
	h.Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
}

// responseWriter records the status and the bytes written, for the request's log line.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends what was written so far.
func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package serve

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Options are the protections around what is served.
type Options struct {
	// BasicAuth maps user names to bcrypt password hashes (an htpasswd file's "user:$2y$…"
	// lines); empty: no basic authentication.
	BasicAuth map[string][]byte
	// BearerTokens are accepted as "Authorization: Bearer <token>"; empty: none.
	BearerTokens []string
	// RatePerSecond and Burst bound each client's requests (0: unlimited).
	RatePerSecond float64
	Burst         int
	// MaxRequestBytes bounds a request's body (default 10 MiB): reads need little.
	MaxRequestBytes int64
	Logger          *slog.Logger
}

// Handler wraps next with authentication, per-client rate limits, a request size limit and one
// structured access log line per request. /healthz and /readyz need no authentication.
func Handler(next http.Handler, o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := o.MaxRequestBytes
	if limit <= 0 {
		limit = 10 << 20
	}
	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	limiter := func(client string) *rate.Limiter {
		mu.Lock()
		defer mu.Unlock()
		l, ok := limiters[client]
		if !ok {
			l = rate.NewLimiter(rate.Limit(o.RatePerSecond), max(o.Burst, 1))
			limiters[client] = l
		}
		return l
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		client, _, _ := net.SplitHostPort(r.RemoteAddr)
		user := "-"
		defer func() {
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
				"duration", time.Since(start).String(), "client", client, "user", user)
		}()
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(sw, r)
			return
		}
		if o.RatePerSecond > 0 && !limiter(client).Allow() {
			sw.Header().Set("Retry-After", "1")
			http.Error(sw, "too many requests", http.StatusTooManyRequests)
			return
		}
		if r.ContentLength > limit {
			http.Error(sw, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, limit)
		if len(o.BasicAuth) > 0 || len(o.BearerTokens) > 0 {
			var ok bool
			if user, ok = authenticate(r, o); !ok {
				sw.Header().Set("WWW-Authenticate", `Basic realm="ferry"`)
				http.Error(sw, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

// authenticate checks basic credentials against bcrypt hashes, or a bearer token.
func authenticate(r *http.Request, o Options) (string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		if hash, known := o.BasicAuth[u]; known && bcrypt.CompareHashAndPassword(hash, []byte(p)) == nil {
			return u, true
		}
		return u, false
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		for _, t := range o.BearerTokens {
			if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
				return "bearer", true
			}
		}
	}
	return "-", false
}

// statusWriter remembers a response's status and size, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

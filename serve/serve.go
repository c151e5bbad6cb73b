package serve

import (
	"crypto/rand"
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
	// ProtectHealth puts /healthz and /readyz behind the same authentication as the rest;
	// otherwise they answer anyone (a kubelet probe has no credentials).
	ProtectHealth bool
	Logger        *slog.Logger
}

// maxClients bounds how many clients' rate limiters are kept at once; see clientLimiters.
const maxClients = 4096

// Handler wraps next with authentication, per-client rate limits, a request size limit and one
// structured access log line per request. /healthz and /readyz need no authentication unless
// o.ProtectHealth.
func Handler(next http.Handler, o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := o.MaxRequestBytes
	if limit <= 0 {
		limit = 10 << 20
	}
	limiters := newClientLimiters(o.RatePerSecond, o.Burst, maxClients, time.Now)
	dummy := dummyHash(o.BasicAuth)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK} // net/http's status when the handler sets none
		client, _, _ := net.SplitHostPort(r.RemoteAddr)
		user := "-"
		defer func() {
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
				"duration", time.Since(start).String(), "client", client, "user", user)
		}()
		if !o.ProtectHealth && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			next.ServeHTTP(sw, r)
			return
		}
		if o.RatePerSecond > 0 && !limiters.allow(client) {
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
			if user, ok = authenticate(r, o, dummy); !ok {
				sw.Header().Set("WWW-Authenticate", `Basic realm="ferry"`)
				http.Error(sw, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

// authenticate checks basic credentials against bcrypt hashes, or a bearer token. An unknown
// user's password is compared with dummy, a hash of the users' highest cost, so the answer takes
// as long as for a known user and does not tell which user names exist.
func authenticate(r *http.Request, o Options, dummy []byte) (string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		hash, known := o.BasicAuth[u]
		if !known {
			hash = dummy
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(p)) == nil && known {
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

// dummyHash returns a bcrypt hash of a random password at the highest cost of users' hashes
// (bcrypt's default without users), for unknown users to be compared with.
func dummyHash(users map[string][]byte) []byte {
	cost := bcrypt.DefaultCost
	if len(users) > 0 {
		cost = bcrypt.MinCost
		for _, h := range users {
			if c, err := bcrypt.Cost(h); err == nil && c > cost {
				cost = c
			}
		}
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil { // cannot happen: the cost is within bcrypt's bounds
		panic(err)
	}
	return h
}

// clientLimiters are the per-client rate limiters. A limiter idle long enough to have refilled
// its burst is the same as a new one, so it is dropped; when more than max clients are still
// kept, the longest idle is dropped. The map stays bounded however many addresses call.
type clientLimiters struct {
	rate  rate.Limit
	burst int
	max   int
	now   func() time.Time
	// refill is how long an idle limiter takes to fill its burst again.
	refill time.Duration

	mu        sync.Mutex
	clients   map[string]*clientLimiter
	lastSweep time.Time
	calls     uint64 // orders clients by their last call, within one instant too
}

type clientLimiter struct {
	l    *rate.Limiter
	seen time.Time
	call uint64
}

func newClientLimiters(perSecond float64, burst, most int, now func() time.Time) *clientLimiters {
	burst = max(burst, 1)
	refill := time.Minute
	if perSecond > 0 {
		refill = time.Duration(float64(burst) / perSecond * float64(time.Second))
	}
	return &clientLimiters{rate: rate.Limit(perSecond), burst: burst, max: most, now: now, refill: refill,
		clients: map[string]*clientLimiter{}, lastSweep: now()}
}

// allow takes one token of client's limiter.
func (c *clientLimiters) allow(client string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	cl, ok := c.clients[client]
	if !ok {
		if len(c.clients) >= c.max || now.Sub(c.lastSweep) > c.refill {
			c.sweep(now)
		}
		cl = &clientLimiter{l: rate.NewLimiter(c.rate, c.burst)}
		c.clients[client] = cl
	}
	c.calls++
	cl.seen, cl.call = now, c.calls
	return cl.l.AllowN(now, 1)
}

// sweep drops the limiters idle for longer than refill, then, while more than max-1 are left,
// the longest idle.
func (c *clientLimiters) sweep(now time.Time) {
	c.lastSweep = now
	for k, cl := range c.clients {
		if now.Sub(cl.seen) > c.refill {
			delete(c.clients, k)
		}
	}
	for len(c.clients) >= c.max {
		var oldest string
		var at uint64
		for k, cl := range c.clients {
			if oldest == "" || cl.call < at {
				oldest, at = k, cl.call
			}
		}
		delete(c.clients, oldest)
	}
}

// len returns how many limiters are kept.
func (c *clientLimiters) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}

// statusWriter remembers a response's status (200 unless the handler writes another, as with
// a HEAD answered with headers only) and size, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

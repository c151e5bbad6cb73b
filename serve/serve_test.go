package serve_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gitops/ferry/internal/authfile"
	"github.com/ferry-gitops/ferry/serve"
)

func TestHandlerAuthLimits(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(htpasswd, []byte("# nodes\nnode:"+string(hash)+"\n"), 0o600)
	creds, err := authfile.Load(htpasswd, "")
	if err != nil {
		t.Fatal(err)
	}
	users := creds.BasicAuth
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("served")) })
	h := serve.Handler(ok, serve.Options{BasicAuth: users, BearerTokens: []string{"tok-123"}, RatePerSecond: 1, Burst: 3, MaxRequestBytes: 16})

	cases := []struct {
		name   string
		setup  func(r *http.Request)
		path   string
		status int
	}{
		{"no credentials", func(*http.Request) {}, "/v2/", http.StatusUnauthorized},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("node", "nope") }, "/v2/", http.StatusUnauthorized},
		{"unknown user", func(r *http.Request) { r.SetBasicAuth("mallory", "s3cret") }, "/v2/", http.StatusUnauthorized},
		{"basic auth", func(r *http.Request) { r.SetBasicAuth("node", "s3cret") }, "/v2/", http.StatusOK},
		{"bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }, "/v2/", http.StatusOK},
		{"health needs no credentials", func(*http.Request) {}, "/healthz", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, c.path, nil)
			r.RemoteAddr = c.name + ":1" // one client per case: rate limits are per client
			c.setup(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d", w.Code, c.status)
			}
		})
	}
	// One client, over its burst: refused with 429.
	var codes []int
	for range 5 {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.RemoteAddr = "192.0.2.7:5555"
		r.SetBasicAuth("node", "s3cret")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		codes = append(codes, w.Code)
	}
	if codes[0] != 200 || codes[4] != http.StatusTooManyRequests {
		t.Fatalf("statuses over the burst: %v", codes)
	}
	// A body over the limit is refused.
	r := httptest.NewRequest(http.MethodPost, "/v2/x/blobs/uploads/", bytesOf(64))
	r.ContentLength = 64
	r.RemoteAddr = "198.51.100.1:1"
	r.SetBasicAuth("node", "s3cret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: status %d", w.Code)
	}
}

type bodyOf struct{ n int }

func (b *bodyOf) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}

func bytesOf(n int) io.Reader { return &bodyOf{n} }

// An unknown user costs the same bcrypt time as a known one with a wrong password, so the
// time of a refusal does not tell which user names exist.
func TestUnknownUserCostsBcrypt(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("served")) })
	h := serve.Handler(ok, serve.Options{BasicAuth: map[string][]byte{"node": hash}})
	fastest := func(user string) time.Duration {
		best := time.Hour
		for range 3 {
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			r.SetBasicAuth(user, "wrong")
			w := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("%s: status %d, want 401", user, w.Code)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := fastest("node"), fastest("mallory")
	if unknown < known/3 {
		t.Fatalf("an unknown user is refused in %s, a known one in %s: the time tells them apart", unknown, known)
	}
}

// With ProtectHealth, /healthz and /readyz need the same credentials as the rest.
func TestProtectHealth(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	for _, protect := range []bool{false, true} {
		h := serve.Handler(ok, serve.Options{BearerTokens: []string{"tok"}, ProtectHealth: protect})
		for _, p := range []string{"/healthz", "/readyz"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
			want := http.StatusOK
			if protect {
				want = http.StatusUnauthorized
			}
			if w.Code != want {
				t.Errorf("ProtectHealth %v: %s without credentials: %d, want %d", protect, p, w.Code, want)
			}
			r := httptest.NewRequest(http.MethodGet, p, nil)
			r.Header.Set("Authorization", "Bearer tok")
			w = httptest.NewRecorder()
			if h.ServeHTTP(w, r); w.Code != http.StatusOK {
				t.Errorf("ProtectHealth %v: %s with a token: %d", protect, p, w.Code)
			}
		}
	}
}

// The access log records the status the client got: 200 for a handler that only set headers
// (a registry's HEAD), and the handler's own status otherwise.
func TestAccessLogStatus(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Docker-Content-Digest", "sha256:0")
		case "/missing":
			http.NotFound(w, r)
		default:
			w.Write([]byte("body"))
		}
	})
	h := serve.Handler(next, serve.Options{Logger: log})
	for _, tc := range []struct {
		method, path string
		status       int
	}{{http.MethodHead, "/head", 200}, {http.MethodGet, "/missing", 404}, {http.MethodGet, "/get", 200}} {
		buf.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.path, nil))
		var rec struct {
			Msg, Method, Path string
			Status            int
		}
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("%s %s: access log %q: %v", tc.method, tc.path, buf.String(), err)
		}
		if rec.Msg != "request" || rec.Method != tc.method || rec.Path != tc.path || rec.Status != tc.status {
			t.Fatalf("%s %s: access log %+v, want status %d", tc.method, tc.path, rec, tc.status)
		}
	}
}

package serve_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

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

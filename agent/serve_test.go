package agent_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/agent"
)

// With serve.htpasswd set, the agent's registry wants credentials: an anonymous GET /v2/ gets
// 401 and an authenticated one 200; serve.bearerTokens adds tokens; serve.rateLimit and
// serve.burst bound each client. A credentials file that is not there stops New before it
// listens.
func TestServeAccessControls(t *testing.T) {
	h := newHarness(t, "agent-serve-auth")
	dir := t.TempDir()

	h.cfg.Serve.HTPasswd = filepath.Join(dir, "missing")
	if a, err := agent.New(h.cfg, agent.Options{Logger: slog.New(slog.DiscardHandler), Now: now}); err == nil || !strings.HasPrefix(err.Error(), "serve.htpasswd: ") {
		if a != nil {
			t.Fatalf("New accepted a missing htpasswd file, listening on %s", a.ServeAddr())
		}
		t.Fatalf("New with a missing htpasswd file: %v, want an error naming serve.htpasswd", err)
	}

	h.cfg.Serve.HTPasswd = filepath.Join(dir, "htpasswd")
	writeHTPasswd(t, h.cfg.Serve.HTPasswd, "node", "s3cret")
	h.cfg.Serve.BearerTokens = filepath.Join(dir, "tokens")
	if err := os.WriteFile(h.cfg.Serve.BearerTokens, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A burst of 7 and a rate that refills nothing during the test: the 8th counted request of
	// this client (127.0.0.1) is refused. /healthz is not counted.
	h.cfg.Serve.RateLimit, h.cfg.Serve.Burst = 0.001, 7
	r := h.start(agent.Options{})

	request := func(path string, auth func(*http.Request)) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, r.serve+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		auth(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	anonymous := func(*http.Request) {}
	basic := func(user, password string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, password) }
	}
	for i, c := range []struct {
		name   string
		path   string
		auth   func(*http.Request)
		status int
	}{
		{"anonymous", "/v2/", anonymous, http.StatusUnauthorized},
		{"wrong password", "/v2/", basic("node", "guess"), http.StatusUnauthorized},
		{"htpasswd user", "/v2/", basic("node", "s3cret"), http.StatusOK},
		{"bearer token", "/v2/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }, http.StatusOK},
		{"anonymous Git remote", "/git/", anonymous, http.StatusUnauthorized},
		{"anonymous health (not counted)", "/healthz", anonymous, http.StatusOK},
		{"authenticated catalog", "/v2/_catalog", basic("node", "s3cret"), http.StatusOK},
		{"burst spent", "/v2/", basic("node", "s3cret"), http.StatusOK},
		{"over the burst", "/v2/", basic("node", "s3cret"), http.StatusTooManyRequests},
	} {
		resp := request(c.path, c.auth)
		if resp.StatusCode != c.status {
			t.Fatalf("request %d (%s, GET %s): status %d, want %d", i, c.name, c.path, resp.StatusCode, c.status)
		}
		if c.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("request %d (%s): 401 without WWW-Authenticate", i, c.name)
		}
	}
}

// serve.protectHealth puts the serve listener's /healthz and /readyz behind its authentication
// (the health listener stays open for probes); a negative serve.git limit stops the agent,
// naming the field.
func TestServeProtectHealthAndGitLimits(t *testing.T) {
	h := newHarness(t, "agent-serve-health")
	dir := t.TempDir()
	h.cfg.Serve.BearerTokens = filepath.Join(dir, "tokens")
	if err := os.WriteFile(h.cfg.Serve.BearerTokens, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.Serve.Git.MaxConcurrent = -1
	if _, err := agent.New(h.cfg, agent.Options{Logger: slog.New(slog.DiscardHandler), Now: now}); err == nil || !strings.Contains(err.Error(), "serve.git") {
		t.Fatalf("New with a negative Git limit: %v, want an error naming serve.git", err)
	}
	h.cfg.Serve.Git.MaxConcurrent = 1
	h.cfg.Serve.ProtectHealth = true
	r := h.start(agent.Options{})
	status := func(url, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if c := status(r.serve+p, ""); c != http.StatusUnauthorized {
			t.Errorf("serve listener %s without credentials: %d, want 401", p, c)
		}
		if c := status(r.serve+p, "tok-123"); c == http.StatusUnauthorized {
			t.Errorf("serve listener %s with a token: 401", p)
		}
	}
	if c := status(r.health+"/healthz", ""); c != http.StatusOK {
		t.Errorf("health listener /healthz: %d, want 200 (probes need no credentials)", c)
	}
}

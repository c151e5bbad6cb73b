package agent

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness is what /readyz reports: ready once the cache is open and served. What the leader's
// reconciliation waits for is a warning, not a reason: the agent's registry is what its own
// rollout pulls the next agent image from (through the Service, which routes to Ready Pods
// only), so a leader that gated readiness on a reconciliation waiting for that rollout would
// never become Ready. See docs/design/agent-readiness.md.
type readiness struct {
	mu         sync.Mutex
	cache      string // why the cache is not open yet; "" once it is
	serving    bool
	leading    bool
	reconciled bool
	waiting    string // why the leader has not reconciled yet
	expired    string // the current bundle expired: a warning /readyz shows (it does not make the agent unready)
}

func newReadiness() *readiness {
	return &readiness{cache: "the cache is not open yet"}
}

func (r *readiness) update(f func(r *readiness)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// reasons says why the agent is not ready; none when it is.
func (r *readiness) reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if r.cache != "" {
		out = append(out, "cache: "+r.cache)
	}
	if !r.serving {
		out = append(out, "serve: the registry and Git remote are not serving yet")
	}
	return out
}

// warnings are what /readyz shows beside its verdict: why the leader has not finished a
// reconciliation yet, and that the current bundle expired.
func (r *readiness) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if r.leading && !r.reconciled {
		w := r.waiting
		if w == "" {
			w = "the first reconciliation has not finished yet"
		}
		out = append(out, "reconcile: "+w)
	}
	if r.expired != "" {
		out = append(out, "expired: "+r.expired)
	}
	return out
}

// healthHandler serves /healthz (the process answers), /readyz (see readiness) and /metrics.
func (a *Agent) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		warnings := a.ready.warnings()
		if reasons := a.ready.reasons(); len(reasons) > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready:\n  %s\n", strings.Join(append(reasons, warnings...), "\n  "))
			return
		}
		fmt.Fprintln(w, "ok")
		if len(warnings) > 0 {
			// Still ready: the registry and Git remote go on serving what the cache holds.
			fmt.Fprintf(w, "warnings:\n  %s\n", strings.Join(warnings, "\n  "))
		}
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{Registry: a.metrics.reg}))
	return mux
}

package agent_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// failingRegistry is a Distribution registry behind a loopback proxy that serves every
// request but the referrers of the roots in fail: those get a response cut short (a medium
// failure the registry client cannot retry), forever. It counts the requests it broke.
type failingRegistry struct {
	host string
	mu   sync.Mutex
	fail map[digest.Digest]bool
	// stall: those roots' referrers get the start of a response, then nothing until the
	// client gives up (a trickle that never ends, or a hung server).
	stall map[digest.Digest]bool
	hits  map[digest.Digest]int
}

func newFailingRegistry(t *testing.T, upstream string) *failingRegistry {
	f := &failingRegistry{fail: map[digest.Digest]bool{}, stall: map[digest.Digest]bool{}, hits: map[digest.Digest]int{}}
	target, _ := url.Parse("http://" + upstream)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/referrers/"); i >= 0 {
			d := digest.Digest(r.URL.Path[i+len("/referrers/"):])
			f.mu.Lock()
			broken, stalled := f.fail[d], f.stall[d]
			if broken || stalled {
				f.hits[d]++
			}
			f.mu.Unlock()
			if stalled {
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.Header().Set("Content-Length", "4096")
				io.WriteString(w, `{"schemaVersion":2,"manifests":[`)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // nothing more, until the client hangs up
				return
			}
			if broken {
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.Header().Set("Content-Length", "4096")
				io.WriteString(w, `{"schemaVersion":2,"manifests":[`) // and the connection ends
				return
			}
		}
		proxy.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	f.host = l.Addr().String()
	return f
}

func (f *failingRegistry) breakRoot(d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[d] = true
}

func (f *failingRegistry) stallRoot(d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stall[d] = true
}

func (f *failingRegistry) broken(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[d]
}

// other is a bundle of sequence seq with another root than h.bundle(seq, previous) makes.
func (h *harness) other(seq uint64, previous digest.Digest) *testbundle.Fixture {
	f := h.bundle(seq, previous)
	f.Bundle.Expires = f.Bundle.Expires.Add(-time.Hour)
	f.Write(h.t, h.signer.Sign)
	return f
}

// A registry source whose bundle claims a low sequence and whose every read past the root
// fails cannot freeze the agent. First it sorts before a valid newer bundle of its own
// source: it holds that one back only for its retries (5 attempts), is then reported stuck
// (log, metric, Event, the cache's record that 'sync status' lists, the status ConfigMap) with
// the medium's error, and the valid bundle is imported; below the current sequence then, it is
// reported as a rollback and not read again. Then another such candidate sorts before a valid
// bundle of another source: that one is imported without waiting for the retries at all.
// Last, a new candidate below the current sequence is rejected from its root alone.
func TestFailingSourceFreezesNothing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "agent-freeze")
	h.cfg.AllowGaps = true // bundle 4 follows bundle 2 in the second half
	h.cfg.Intervals.RetryMin.Duration = 300 * time.Millisecond
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := testenv.NewRegistry(t)
	proxy := newFailingRegistry(t, reg.Host)
	repo := "/ferry/bundles"
	push := func(tag string, f *testbundle.Fixture) {
		t.Helper()
		if _, err := medium.Write(ctx, medium.Registry(reg.Host+repo, tag), f.Dir, medium.WithPlainHTTP(reg.Host)); err != nil {
			t.Fatal(err)
		}
	}
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	evil := h.other(1, "")
	proxy.breakRoot(evil.Root.Digest)
	push("evil", evil)
	push("b2", b2)
	source := "registry " + proxy.host + repo
	h.cfg.Sources = []agent.SourceConfig{
		{Registry: &agent.RegistrySource{Repository: proxy.host + repo, PlainHTTP: true}},
		{Dir: h.drop},
	}
	r := h.start(agent.Options{})

	waitFor(t, 30*time.Second, "bundle 2 accepted from the source that also fails", func() bool { return h.state().Sequence == 2 })
	if h.state().Root != b2.Root.Digest {
		t.Fatalf("current %+v, want bundle 2's root %s", h.state(), b2.Root.Digest)
	}
	if n := proxy.broken(evil.Root.Digest); n != 5 {
		t.Fatalf("the failing candidate was tried %d times before the next was imported, want 5 (4 retries)", n)
	}
	stuckMetric := `ferry_candidates_stuck_total{source="` + source + `"}`
	if v := r.value(stuckMetric); v != 1 {
		t.Fatalf("%s = %v, want 1", stuckMetric, v)
	}
	var stuck, rollback bool
	waitFor(t, 10*time.Second, "the stuck candidate and its rollback recorded", func() bool {
		stuck, rollback = false, false
		for _, rj := range h.rejections() {
			if rj.Candidate != "evil" || rj.Source != source {
				continue
			}
			switch rj.Check {
			case agent.CheckStuck:
				if rj.Sequence != 1 || rj.Root != evil.Root.Digest || !strings.Contains(rj.Message, "unexpected EOF") || rj.Fix == "" {
					t.Fatalf("the stuck candidate is recorded as %+v, want its root and the medium's error", rj)
				}
				stuck = true
			case string(bundle.CheckRollback):
				if rj.Sequence != 1 || rj.Root != evil.Root.Digest || !strings.Contains(rj.Message, "skipped without reading") {
					t.Fatalf("the rollback is recorded as %+v", rj)
				}
				rollback = true
			}
		}
		return stuck && rollback
	})
	waitFor(t, 10*time.Second, "a CandidateStuck Event naming the candidate and the error", func() bool {
		for _, e := range h.events(agent.ReasonCandidateStuck) {
			if e.Type == "Warning" && strings.Contains(e.Note, "evil") && strings.Contains(e.Note, "unexpected EOF") {
				return true
			}
		}
		return false
	})
	if st, ok := h.status(); !ok || !hasCheck(st, agent.CheckStuck) {
		t.Fatalf("the status ConfigMap does not list the stuck candidate: %+v", st)
	}
	if !strings.Contains(r.logs.String(), `"msg":"candidate stuck`) {
		t.Fatalf("no log says the candidate is stuck:\n%s", r.logs.String())
	}
	// Below the current sequence now, it is not read again.
	tries := proxy.broken(evil.Root.Digest)
	time.Sleep(time.Second)
	if n := proxy.broken(evil.Root.Digest); n != tries {
		t.Fatalf("a candidate below the current sequence was read again (%d reads past its root, then %d)", tries, n)
	}

	// Another failing candidate, sequence 3, in the registry; a valid bundle 4 arrives in the
	// drop directory: it is imported long before the failing one is stuck.
	evil3 := h.other(3, b2.Root.Digest)
	proxy.breakRoot(evil3.Root.Digest)
	push("evil3", evil3)
	waitFor(t, 10*time.Second, "the second failing candidate tried", func() bool { return proxy.broken(evil3.Root.Digest) >= 1 })
	b4 := h.bundle(4, b2.Root.Digest)
	dropTar(t, h.drop, "b4.tar", b4)
	waitFor(t, 10*time.Second, "bundle 4 accepted from the other source", func() bool { return h.state().Sequence == 4 })
	if h.state().Root != b4.Root.Digest {
		t.Fatalf("current %+v, want bundle 4's root %s", h.state(), b4.Root.Digest)
	}
	if v := r.value(stuckMetric); v != 1 {
		t.Fatalf("bundle 4 waited for the failing candidate of another source to be stuck (%s = %v)", stuckMetric, v)
	}
	if got := r.loggedAccepted(); len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Fatalf("accepted %v, want [2 4]", got)
	}

	// A new candidate whose root claims a sequence below the current one is rejected as a
	// rollback from its root alone: nothing past the root is requested.
	late := h.other(2, b1.Root.Digest)
	late.Bundle.Expires = late.Bundle.Expires.Add(-time.Hour)
	late.Write(t, h.signer.Sign)
	proxy.breakRoot(late.Root.Digest)
	push("late", late)
	waitFor(t, 10*time.Second, "the late low candidate rejected as a rollback", func() bool {
		for _, rj := range h.rejections() {
			if rj.Candidate == "late" && rj.Check == string(bundle.CheckRollback) && rj.Root == late.Root.Digest && rj.State.Sequence == 4 {
				return true
			}
		}
		return false
	})
	if n := proxy.broken(late.Root.Digest); n != 0 {
		t.Fatalf("a candidate below the current sequence was read past its root (%d requests for its referrers)", n)
	}
}

func hasCheck(st agent.Status, check string) bool {
	for _, rj := range st.Rejections {
		if rj.Check == check {
			return true
		}
	}
	return false
}

// A registry source that starts to answer and then sends nothing, for ever, cannot freeze the
// agent either: each read of it stops after intervals.stall without a byte, as the medium's
// failure; after its retries the candidate is reported stuck with the stall, and the valid
// newer bundle of the same source is imported.
func TestStallingSourceFreezesNothing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "agent-stall")
	h.cfg.Intervals.RetryMin.Duration = 200 * time.Millisecond
	h.cfg.Intervals.Stall.Duration = 400 * time.Millisecond
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := testenv.NewRegistry(t)
	proxy := newFailingRegistry(t, reg.Host)
	repo := "/ferry/bundles"
	h.cfg.AllowGaps = true // the first bundle accepted is bundle 2
	b2 := h.bundle(2, "")
	evil := h.other(1, "") // sorts first: its root claims sequence 1
	proxy.stallRoot(evil.Root.Digest)
	for tag, f := range map[string]*testbundle.Fixture{"evil": evil, "b2": b2} {
		if _, err := medium.Write(ctx, medium.Registry(reg.Host+repo, tag), f.Dir, medium.WithPlainHTTP(reg.Host)); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg.Sources = []agent.SourceConfig{{Registry: &agent.RegistrySource{Repository: proxy.host + repo, PlainHTTP: true}}}
	h.start(agent.Options{})

	waitFor(t, 30*time.Second, "bundle 2 accepted past the stalling candidate", func() bool { return h.state().Sequence == 2 })
	if h.state().Root != b2.Root.Digest {
		t.Fatalf("current %+v, want bundle 2's root %s", h.state(), b2.Root.Digest)
	}
	if n := proxy.broken(evil.Root.Digest); n < 5 {
		t.Fatalf("the stalling candidate was read %d times, want its 5 attempts", n)
	}
	waitFor(t, 10*time.Second, "the stalling candidate recorded as stuck, with the stall", func() bool {
		for _, rj := range h.rejections() {
			if rj.Candidate == "evil" && rj.Check == agent.CheckStuck && strings.Contains(rj.Message, "stall timeout") {
				return true
			}
		}
		return false
	})
}

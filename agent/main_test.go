package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// cluster is the API server every test of the package shares; TestMain starts it and installs
// the Flux CRDs. Each test has its own namespace (status ConfigMap, Events, Lease).
var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ferry-agent-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if cluster, err = testenv.StartCluster(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cluster.Stop()
	if err := reconcile.InstallCRDs(ctx, cluster.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// now is the clock bundles are verified against: an hour after the fixtures were made.
func now() time.Time { return testbundle.Created.Add(time.Hour) }

// harness is one test's namespace, cache, drop directory, signing key and configuration.
type harness struct {
	t      *testing.T
	ns     string
	cache  string
	drop   string
	signer *testbundle.Signer
	cfg    agent.Config
	cs     *kubernetes.Clientset
}

func newHarness(t *testing.T, ns string) *harness {
	t.Helper()
	t.Setenv("POD_NAMESPACE", "") // the status lives in the test's namespace (leaderElection.namespace)
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := &harness{t: t, ns: ns, cache: filepath.Join(dir, "cache"), drop: filepath.Join(dir, "drop"), signer: testbundle.NewSigner(t), cs: cs}
	if err := os.MkdirAll(h.drop, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(key, h.signer.PublicPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	h.cfg = agent.Config{
		APIVersion: agent.APIVersion, Kind: agent.Kind,
		Cache:   h.cache,
		Keys:    []agent.KeyConfig{{Path: key}},
		Sources: []agent.SourceConfig{{Dir: h.drop}},
		Intervals: agent.IntervalsConfig{Poll: agent.Duration{Duration: 100 * time.Millisecond}, Reconcile: agent.Duration{Duration: 2 * time.Second},
			RetryMin: agent.Duration{Duration: 100 * time.Millisecond}, RetryMax: agent.Duration{Duration: time.Second}},
		Serve:          agent.ServeConfig{Listen: "127.0.0.1:0", GitWorkDir: filepath.Join(dir, "git")},
		Health:         agent.HealthConfig{Listen: "127.0.0.1:0"},
		Kubeconfig:     cluster.Kubeconfig,
		LeaderElection: agent.LeaderElectionConfig{Namespace: ns},
	}
	return h
}

// running is an agent running in the background.
type running struct {
	t      *testing.T
	a      *agent.Agent
	logs   *testenv.SyncBuffer
	health string
	serve  string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// start runs an agent with h's configuration until the test ends (or stop).
func (h *harness) start(o agent.Options) *running {
	h.t.Helper()
	logs := &testenv.SyncBuffer{}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.Now == nil {
		o.Now = now
	}
	a, err := agent.New(h.cfg, o)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: h.t, a: a, logs: logs, cancel: cancel, done: make(chan error, 1),
		health: "http://" + a.HealthAddr().String(), serve: "http://" + a.ServeAddr().String()}
	go func() { r.done <- a.Run(ctx) }()
	h.t.Cleanup(func() {
		r.stop()
		if h.t.Failed() {
			h.t.Logf("agent %s log:\n%s", a.Identity(), logs.String())
		}
	})
	return r
}

// stop stops the agent as SIGTERM would, and checks it stopped cleanly and in time.
func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("agent %s: Run returned %v after a clean stop", r.a.Identity(), err)
			}
		case <-time.After(20 * time.Second):
			r.t.Errorf("agent %s did not stop within 20s", r.a.Identity())
		}
	})
}

// metric returns the value of one sample of /metrics (ok false when absent).
func (r *running) metric(sample string) (float64, bool) {
	r.t.Helper()
	resp, err := http.Get(r.health + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				r.t.Fatalf("metric %s: %v", sample, err)
			}
			return v, true
		}
	}
	return 0, false
}

// value is metric, with an absent sample as 0.
func (r *running) value(sample string) float64 {
	v, _ := r.metric(sample)
	return v
}

// get GETs a path of the health listener, returning status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// loggedAccepted returns the sequences the agent logged as accepted, in order.
func (r *running) loggedAccepted() []uint64 {
	var out []uint64
	for _, line := range strings.Split(r.logs.String(), "\n") {
		var rec struct {
			Msg      string `json:"msg"`
			Sequence uint64 `json:"sequence"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "bundle accepted" {
			out = append(out, rec.Sequence)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state reads the cache's state without the lock, as 'sync status' does.
func (h *harness) state() cache.State {
	h.t.Helper()
	c, err := cache.OpenReader(h.cache)
	if err != nil {
		return cache.State{}
	}
	st, err := c.State()
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// rejections lists the cache's recorded rejections.
func (h *harness) rejections() []cache.Rejection {
	h.t.Helper()
	c, err := cache.OpenReader(h.cache)
	if err != nil {
		h.t.Fatal(err)
	}
	rs, err := c.Rejections()
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

// status reads the status ConfigMap (ok false while it does not exist).
func (h *harness) status() (agent.Status, bool) {
	h.t.Helper()
	cm, err := h.cs.CoreV1().ConfigMaps(h.ns).Get(context.Background(), agent.DefaultStatusConfigMap, metav1.GetOptions{})
	if err != nil {
		return agent.Status{}, false
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(cm.Data[agent.StatusKey]), &st); err != nil {
		h.t.Fatalf("status ConfigMap: %v\n%s", err, cm.Data[agent.StatusKey])
	}
	return st, true
}

// events lists the Events (events.k8s.io) of the test's namespace with reason.
func (h *harness) events(reason string) []eventsv1.Event {
	h.t.Helper()
	list, err := h.cs.EventsV1().Events(h.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// bundle builds a signed fixture bundle (sequence seq, chained to previous).
func (h *harness) bundle(seq uint64, previous digest.Digest) *testbundle.Fixture {
	return testbundle.New(h.t, seq, previous, h.signer.Sign)
}

// dropTar writes f as a tar into dir under name: under a hidden name first, then renamed into
// place, as an operator's copy would.
func dropTar(t *testing.T, dir, name string, f *testbundle.Fixture) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(filepath.Join(dir, "."+name+".partial"), f.Tar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "."+name+".partial"), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// splitParts splits f's tar into parts of partSize bytes in a new folder, and returns the part
// list's path and the parts' paths in order.
func splitParts(t *testing.T, f *testbundle.Fixture, name string, partSize int64) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	list, err := bundle.Split(context.Background(), bytes.NewReader(f.Tar(t)), dir, name, partSize)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, p := range list.Parts {
		parts = append(parts, filepath.Join(dir, p.Name))
	}
	return filepath.Join(dir, bundle.PartListName(name)), parts
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a layout directory into dst (made under a hidden name, then renamed).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".partial")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		}
		copyFile(t, p, filepath.Join(tmp, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

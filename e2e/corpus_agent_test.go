package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/reconcile"
)

// agentCase is a corpus case the agent can be given as it runs: one that keeps the agent's
// policy, is newer than the last accepted bundle (an older one may be skipped unread), and
// involves no fault or watcher of the test's own.
func agentCase(t *testing.T, c corpusCase, k *corpusKit, base func() bool) (hostileBundle, bool) {
	if c.check == bundle.CheckRollback || c.check == bundle.CheckReplay || c.check == "" {
		return hostileBundle{}, false
	}
	h := c.make(t, k)
	return h, h.fault == nil && h.observe == nil && !h.mediumFailure && base()
}

// TestHostileCorpusThroughAgent runs the corpus through the agent's own loop (sync run) with a
// drop-directory source and a registry source: every hostile bundle a running agent finds is
// refused by its expected check and recorded as a rejection, the cache (but for its rejection
// records) is byte-identical, and the genuine bundle dropped last is accepted.
func TestHostileCorpusThroughAgent(t *testing.T) {
	ctx := context.Background()
	cluster := testenv.NewCluster(t)
	if err := reconcile.InstallCRDs(ctx, cluster.Config); err != nil {
		t.Fatal(err)
	}
	reg := testenv.NewRegistry(t)
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"dir", "registry"} {
		t.Run(kind, func(t *testing.T) {
			k, policy, genuine := newCorpusKit(t)
			ns := "corpus-" + kind
			t.Setenv("POD_NAMESPACE", "")
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var keys []agent.KeyConfig
			for i, p := range []pinned{k.a1, k.ed} {
				pub, _ := p.sv.PublicKey()
				pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, fmt.Sprintf("key-%d.pub", i))
				os.WriteFile(path, pem, 0o644)
				keys = append(keys, agent.KeyConfig{Path: path})
			}
			drop := filepath.Join(dir, "drop")
			os.MkdirAll(drop, 0o755)
			repo := reg.Host + "/corpus-agent/bundles"
			var place func(name string, h hostileBundle)
			src := agent.SourceConfig{Dir: drop}
			if kind == "registry" {
				src = agent.SourceConfig{Registry: &agent.RegistrySource{Repository: repo, PlainHTTP: true}}
				place = func(name string, h hostileBundle) {
					if _, err := medium.Write(ctx, medium.Registry(repo, name), h.dir, medium.WithPlainHTTP(reg.Host)); err != nil {
						t.Fatalf("push %s: %v", name, err)
					}
				}
			} else {
				place = func(name string, h hostileBundle) {
					tb := h.tar
					if tb == nil {
						tb = rawTar(t, h.dir)
					}
					if err := os.WriteFile(filepath.Join(drop, name+".tar"), tb, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			cfg := agent.Config{
				APIVersion: agent.APIVersion, Kind: agent.Kind,
				Cache: filepath.Join(dir, "cache"), Keys: keys, Sources: []agent.SourceConfig{src},
				Intervals: agent.IntervalsConfig{Poll: agent.Duration{Duration: 100 * time.Millisecond}, Reconcile: agent.Duration{Duration: time.Hour},
					RetryMin: agent.Duration{Duration: 100 * time.Millisecond}, RetryMax: agent.Duration{Duration: time.Second}},
				Serve:          agent.ServeConfig{Listen: "127.0.0.1:0", GitWorkDir: filepath.Join(dir, "git")},
				Health:         agent.HealthConfig{Listen: "127.0.0.1:0"},
				Kubeconfig:     cluster.Kubeconfig,
				LeaderElection: agent.LeaderElectionConfig{Namespace: ns},
			}
			logs := &testenv.SyncBuffer{}
			a, err := agent.New(cfg, agent.Options{Now: func() time.Time { return k.now }, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			actx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- a.Run(actx) }()
			defer func() {
				cancel()
				<-done
				if t.Failed() {
					t.Logf("agent log:\n%s", logs.String())
				}
			}()
			state := func() cache.State {
				c, err := cache.OpenReader(cfg.Cache)
				if err != nil {
					return cache.State{}
				}
				st, _ := c.State()
				return st
			}
			rejections := func() []cache.Rejection {
				c, err := cache.OpenReader(cfg.Cache)
				if err != nil {
					return nil
				}
				r, _ := c.Rejections()
				return r
			}
			until := func(what string, d time.Duration, cond func() bool) {
				t.Helper()
				for end := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
					if time.Now().After(end) {
						t.Fatalf("%s: not within %s", what, d)
					}
				}
			}
			place("b1", hostileBundle{dir: k.first.Dir})
			until("bundle 1 accepted", 30*time.Second, func() bool { return state().Sequence == 1 })
			place("b2", hostileBundle{dir: k.last.Dir})
			until("bundle 2 accepted", 30*time.Second, func() bool { return state().Sequence == 2 })

			on := onTar
			if kind == "registry" {
				on = onRegistry
			}
			want := map[string]corpusCase{}
			basePolicy := func() bool {
				return k.policy.Threshold == policy.Threshold && k.policy.Limits == policy.Limits && k.policy.AgentFloor == policy.AgentFloor && len(k.policy.Keys) == len(policy.Keys) &&
					k.policy.Keys[0].NotAfter.IsZero() && k.policy.Keys[0].NotBefore.IsZero() &&
					reflect.ValueOf(k.policy.Now).Pointer() == reflect.ValueOf(policy.Now).Pointer()
			}
			var hostiles []struct {
				name string
				h    hostileBundle
			}
			for i, c := range corpus() {
				if c.on&on == 0 {
					continue
				}
				k.policy = policy
				k.policy.Keys = append(k.policy.Keys[:0:0], policy.Keys...)
				h, ok := agentCase(t, c, k, basePolicy)
				if !ok {
					continue
				}
				name := fmt.Sprintf("case-%03d", i)
				want[name] = c
				hostiles = append(hostiles, struct {
					name string
					h    hostileBundle
				}{name, h})
			}
			time.Sleep(time.Second) // let the agent settle after bundle 2
			exclude := filepath.Join(cfg.Cache, "rejections")
			before := treeHashExcept(t, cfg.Cache, exclude)
			for _, x := range hostiles {
				place(x.name, x.h)
			}
			until(fmt.Sprintf("%d hostile bundles rejected", len(hostiles)), 90*time.Second, func() bool { return len(rejections()) >= len(hostiles) })
			refused := map[string]bool{}
			for _, rj := range rejections() {
				name := strings.TrimSuffix(rj.Candidate, ".tar")
				refused[name] = true
				c, ok := want[name]
				if !ok {
					t.Errorf("rejection of an unexpected candidate %q: %s", rj.Candidate, rj.Message)
					continue
				}
				check := c.check
				if c.tarCheck != "" && kind == "dir" {
					check = c.tarCheck
				}
				if rj.Check != string(check) {
					t.Errorf("%s (%s): refused by check %q, want %q: %s", name, c.name, rj.Check, check, rj.Message)
				}
			}
			for name, c := range want {
				if !refused[name] {
					t.Errorf("%s (%s): no rejection recorded", name, c.name)
				}
			}
			if after := treeHashExcept(t, cfg.Cache, exclude); after != before {
				t.Fatalf("hostile bundles changed the cache:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if st := state(); st.Sequence != 2 || st.Root != k.last.Root.Digest {
				t.Fatalf("state after the hostile bundles: %+v", st)
			}
			place("genuine", hostileBundle{dir: genuine.Dir})
			until("the genuine bundle 3 accepted after the hostile ones", 60*time.Second, func() bool { return state().Root == genuine.Root.Digest })
			t.Logf("%s source: %d hostile bundles refused by the agent, each by its check; cache unchanged; bundle 3 accepted", kind, len(hostiles))
		})
	}
}

// treeHashExcept is cacheTreeHash of dir without the folder skip.
func treeHashExcept(t testing.TB, dir, skip string) string {
	var keep []string
	for _, l := range strings.Split(cacheTreeHash(t, dir), "\n") {
		rel, _ := filepath.Rel(dir, skip)
		if l == "" || strings.HasPrefix(l, rel+"/") || strings.HasPrefix(l, rel+" ") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

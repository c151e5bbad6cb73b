package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// TestFluxCLI reads and drives Ferry's objects with the flux CLI, built from Flux's Go module:
// flux get lists every source, Kustomization and HelmRelease with its Ready status and
// revision (a HelmRelease whose chart the bundle does not carry says SourceNotCarried and
// names the chart), and flux reconcile, suspend and resume take effect while sync reconciles.
func TestFluxCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gitSrv := testenv.NewGitServer(t)
	commit, err := gitSrv.CreateRepo(ctx, "platform", map[string]string{
		"apps/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-apps\n",
		"apps/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: flux-apps\ndata:\n  hello: world\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	helm := testenv.NewHelmRepo(t)
	if _, err := helm.AddChart("web", "1.2.0", map[string]string{
		"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
	}, nil); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: platform\n    url: %s\n    ref: {branch: main}\n"+
		"charts:\n  - name: web\n    repository: %s\n    version: 1.2.0\n", gitSrv.RepoURL("platform"), helm.URL)
	cacheDir, cluster := packImportCluster(t, dir, spec, gitSrv.Stop, helm.Stop)
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	objects := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform, namespace: flux-system}
spec: {url: %[1]s, ref: {branch: main}, interval: 1m}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: platform, namespace: flux-system}
spec: {interval: 10m, sourceRef: {kind: GitRepository, name: platform}, path: apps, prune: true}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts, namespace: flux-system}
spec: {url: %[2]s, interval: 1m}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: flux-system}
spec:
  interval: 10m
  targetNamespace: default
  chart: {spec: {chart: web, version: 1.x, sourceRef: {kind: HelmRepository, name: charts}}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: cache, namespace: flux-system}
spec:
  interval: 10m
  chart: {spec: {chart: redis, version: "20.x", sourceRef: {kind: HelmRepository, name: charts}}}
`, gitSrv.RepoURL("platform"), helm.URL)
	os.WriteFile(filepath.Join(dir, "objects.yaml"), []byte(objects), 0o644)
	must(t, dir, nil, "kubectl", append(kube, "apply", "-f", "objects.yaml")...)

	// sync's reconciler runs as the agent does, pass after pass, while the CLI works.
	r, err := reconcile.New(cluster.Config, cacheDir, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for loopCtx.Err() == nil {
			r.ReconcileAll(loopCtx) // the cache item "cache" is not carried: errors are expected
			select {
			case <-loopCtx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })
	must(t, dir, nil, "kubectl", append(kube, "wait", "--for=condition=Ready", "-n", "flux-system", "kustomization/platform", "helmrelease/web", "--timeout=60s")...)

	// flux prints tables on stdout and its progress lines (✔ applied revision …) on stderr.
	flux := func(args ...string) string {
		t.Helper()
		res := run(t, dir, nil, "flux", append(append([]string{}, kube...), args...)...)
		if res.Err != nil {
			t.Fatalf("flux %s: %v\n%s%s", strings.Join(args, " "), res.Err, res.Stdout, res.Stderr)
		}
		return res.Stdout + res.Stderr
	}
	revision := "main@sha1:" + commit
	short := "main@sha1:" + commit[:8] // flux get abbreviates revisions, in the message too
	expectRow := func(table, name string, parts ...string) {
		t.Helper()
		for _, line := range strings.Split(table, "\n") {
			if f := strings.Fields(line); len(f) > 1 && (f[0] == name || f[1] == name) {
				for _, p := range parts {
					if !strings.Contains(line, p) {
						t.Fatalf("flux get: row %s does not say %q:\n%s", name, p, table)
					}
				}
				return
			}
		}
		t.Fatalf("flux get: no row %s:\n%s", name, table)
	}
	sources := flux("get", "sources", "all", "-A")
	expectRow(sources, "gitrepository/platform", short, "True", "stored artifact for revision '"+short+"'")
	expectRow(sources, "helmrepository/charts", "True", "1 charts carried: web 1.2.0")
	ks := flux("get", "kustomizations", "-A")
	expectRow(ks, "platform", short, "True", "Applied revision: "+short)
	hrs := flux("get", "helmreleases", "-A")
	expectRow(hrs, "web", "1.2.0", "True")
	expectRow(hrs, "cache", "False", "SourceNotCarried", "chart redis")
	t.Logf("flux get sources all -A:\n%s\nflux get kustomizations -A:\n%s\nflux get helmreleases -A:\n%s", sources, ks, hrs)

	// flux reconcile sets reconcile.fluxcd.io/requestedAt and waits until sync has handled it.
	out := flux("reconcile", "kustomization", "platform", "-n", "flux-system", "--with-source", "--timeout=60s")
	if !strings.Contains(out, "applied revision "+revision) {
		t.Fatalf("flux reconcile: %s", out)
	}
	handled := must(t, dir, nil, "kubectl", append(kube, "get", "kustomization", "platform", "-n", "flux-system", "-o", "jsonpath={.status.lastHandledReconcileAt}")...)
	requested := must(t, dir, nil, "kubectl", append(kube, "get", "kustomization", "platform", "-n", "flux-system", "-o", `jsonpath={.metadata.annotations.reconcile\.fluxcd\.io/requestedAt}`)...)
	if handled == "" || handled != requested {
		t.Fatalf("lastHandledReconcileAt %q, requestedAt %q", handled, requested)
	}

	// flux suspend: sync leaves the Kustomization alone (a deleted ConfigMap stays deleted);
	// flux resume: it is reconciled again and the ConfigMap comes back.
	flux("suspend", "kustomization", "platform", "-n", "flux-system")
	if f := strings.Fields(strings.Split(strings.TrimSpace(flux("get", "kustomizations", "-A")), "\n")[1]); len(f) < 4 || f[1] != "platform" || f[3] != "True" {
		t.Fatalf("flux get kustomizations after flux suspend: SUSPENDED is not True: %v", f)
	}
	must(t, dir, nil, "kubectl", append(kube, "delete", "configmap", "greeting", "-n", "flux-apps")...)
	time.Sleep(2 * time.Second) // several passes
	if res := run(t, dir, nil, "kubectl", append(kube, "get", "configmap", "greeting", "-n", "flux-apps")...); res.Err == nil {
		t.Fatal("a suspended Kustomization was reconciled: the deleted ConfigMap is back")
	}
	out = flux("resume", "kustomization", "platform", "-n", "flux-system", "--timeout=60s")
	if !strings.Contains(out, "applied revision "+revision) {
		t.Fatalf("flux resume: %s", out)
	}
	if got := must(t, dir, nil, "kubectl", append(kube, "get", "configmap", "greeting", "-n", "flux-apps", "-o", "jsonpath={.data.hello}")...); got != "world" {
		t.Fatalf("after flux resume, ConfigMap flux-apps/greeting = %q", got)
	}
	t.Logf("flux reconcile, suspend, resume: %s", strings.TrimSpace(out))
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// The whole flow into a cluster: mirror pack, sync import, reconcile; stock kubectl waits for
// the Kustomization to be Ready and shows its readiness and the revision applied.
func TestReconcileWithStockKubectl(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gitSrv := testenv.NewGitServer(t)
	commit, err := gitSrv.CreateRepo(ctx, "platform", map[string]string{
		"apps/kustomization.yaml": "resources:\n- namespace.yaml\n- configmap.yaml\n",
		"apps/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
		"apps/configmap.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: demo\ndata:\n  hello: world\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: platform\n    url: %s\n    ref: {branch: main}\n", gitSrv.RepoURL("platform"))
	cacheDir, cluster := packImportCluster(t, dir, spec, gitSrv.Stop)
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	// The GitRepository names the Git URL and ref exactly as ferry.yaml does: sync resolves it to
	// the bundle's item (the Git server is stopped by now).
	manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ferry-system\n---\n" +
		"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: platform\n  namespace: ferry-system\n" +
		fmt.Sprintf("spec:\n  url: %s\n  ref: {branch: main}\n  interval: 1m\n---\n", gitSrv.RepoURL("platform")) +
		"apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: ferry-system\n" +
		"spec:\n  interval: 1m\n  sourceRef: {kind: GitRepository, name: platform}\n  path: apps\n  prune: true\n"
	os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(manifest), 0o644)
	must(t, dir, nil, "kubectl", append(kube, "apply", "-f", "kustomization.yaml")...)

	r, err := reconcile.New(cluster.Config, cacheDir, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	out := must(t, dir, nil, "kubectl", append(kube, "wait", "--for=condition=Ready", "kustomization/platform", "-n", "ferry-system", "--timeout=30s")...)
	if !strings.Contains(out, "condition met") {
		t.Fatalf("kubectl wait: %s", out)
	}
	// Flux's printer columns: NAME AGE READY STATUS, the status being the Ready message, which
	// names the revision applied.
	revision := "main@sha1:" + commit
	table := must(t, dir, nil, "kubectl", append(kube, "get", "kustomizations", "-n", "ferry-system")...)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	header := strings.Fields(lines[0])
	if len(lines) != 2 || strings.Join(header, " ") != "NAME AGE READY STATUS" {
		t.Fatalf("kubectl get kustomizations does not show Flux's columns:\n%s", table)
	}
	row := strings.Fields(lines[1])
	if len(row) < 4 || row[0] != "platform" || row[2] != "True" || !strings.Contains(lines[1], "Applied revision: "+revision) {
		t.Fatalf("kubectl get kustomizations does not show platform Ready at %s:\n%s", revision, table)
	}
	if got := must(t, dir, nil, "kubectl", append(kube, "get", "kustomization", "platform", "-n", "ferry-system", "-o", "jsonpath={.status.lastAppliedRevision}")...); got != revision {
		t.Fatalf("kustomization platform: lastAppliedRevision %q, want %q", got, revision)
	}
	// The source, Ready too, says which bundle item it resolved to.
	msg := must(t, dir, nil, "kubectl", append(kube, "get", "gitrepository", "platform", "-n", "ferry-system", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].message}`)...)
	if want := "stored artifact for revision '" + revision + "' (bundle item platform)"; msg != want {
		t.Fatalf("gitrepository platform: Ready message %q, want %q", msg, want)
	}
	cm := must(t, dir, nil, "kubectl", append(kube, "get", "configmap", "greeting", "-n", "demo", "-o", "jsonpath={.data.hello}")...)
	if cm != "world" {
		t.Fatalf("ConfigMap demo/greeting: %q", cm)
	}
	t.Logf("kubectl wait: %s; kubectl get kustomizations:\n%s", strings.TrimSpace(out), table)
}

// packImportCluster packs spec (ferry.yaml in dir) signed with a new key, calls stopUpstreams,
// imports the bundle into dir/cache with sync import, and starts a cluster with the CRDs sync
// reconciles; it returns the cache folder and the cluster.
func packImportCluster(t *testing.T, dir, spec string, stopUpstreams ...func() error) (string, *testenv.Cluster) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, dir, []string{"COSIGN_PASSWORD=ferry"}, "cosign", "generate-key-pair")
	must(t, dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", "pack", "-f", "ferry.yaml", "--key", "cosign.key", "--out", "bundle")
	for _, stop := range stopUpstreams {
		stop()
	}
	cacheDir := filepath.Join(dir, "cache")
	must(t, dir, nil, "sync", "import", "--cache", cacheDir, "--key", "cosign.pub", "bundle")
	cluster := testenv.NewCluster(t)
	if err := reconcile.InstallCRDs(context.Background(), cluster.Config); err != nil {
		t.Fatal(err)
	}
	return cacheDir, cluster
}

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
// the Kustomization to be Ready and shows its readiness and revision columns.
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
	os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644)
	must(t, dir, []string{"COSIGN_PASSWORD=ferry"}, "cosign", "generate-key-pair")
	must(t, dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", "pack", "-f", "ferry.yaml", "--key", "cosign.key", "--out", "bundle")
	gitSrv.Stop()
	cacheDir := filepath.Join(dir, "cache")
	must(t, dir, nil, "sync", "import", "--cache", cacheDir, "--key", "cosign.pub", "bundle")

	cluster := testenv.NewCluster(t)
	if err := reconcile.InstallCRDs(ctx, cluster.Config); err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ferry-system\n---\n" +
		"apiVersion: ferry.dev/v1alpha1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: ferry-system\n" +
		"spec:\n  interval: 1m\n  sourceRef: {kind: GitSource, name: platform}\n  path: apps\n  prune: true\n"
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
	table := must(t, dir, nil, "kubectl", append(kube, "get", "kustomizations", "-n", "ferry-system")...)
	header := strings.Fields(strings.SplitN(table, "\n", 2)[0])
	if !strings.Contains(table, commit) || !strings.Contains(table, "True") || !strings.Contains(strings.Join(header, " "), "READY") || !strings.Contains(strings.Join(header, " "), "REVISION") {
		t.Fatalf("kubectl get kustomizations does not show readiness and revision:\n%s", table)
	}
	cm := must(t, dir, nil, "kubectl", append(kube, "get", "configmap", "greeting", "-n", "demo", "-o", "jsonpath={.data.hello}")...)
	if cm != "world" {
		t.Fatalf("ConfigMap demo/greeting: %q", cm)
	}
	t.Logf("kubectl wait: %s; kubectl get kustomizations:\n%s", strings.TrimSpace(out), table)
}

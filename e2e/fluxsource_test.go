package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/serve/registry"
)

// TestFluxSourceControllerReadsFerry points Flux's own source-controller (built from its Go
// module) at what sync serves, as a team that keeps Flux's controllers does: a plain
// OCIRepository on the Git item's repository, at the default tag, becomes Ready with the Git
// item's Flux artifact (the tag names that artifact alone, not the index with the Git pack), and
// a GitRepository on sync's Git remote becomes Ready at the carried commit. Upstream is stopped
// first, and Ferry's reconciler does not run: every byte comes from sync serve.
func TestFluxSourceControllerReadsFerry(t *testing.T) {
	dir := t.TempDir()
	gitSrv := testenv.NewGitServer(t)
	commit, err := gitSrv.CreateRepo(context.Background(), "platform", map[string]string{
		"apps/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  hello: world\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: platform\n    url: %s\n    ref: {branch: main}\n", gitSrv.RepoURL("platform"))
	cacheDir, cluster := packImportCluster(t, dir, spec, gitSrv.Stop)
	addr := startServe(t, dir, cacheDir)
	b, err := bundle.ReadLayout(context.Background(), filepath.Join(dir, "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	item := b.Bundle.Item("platform")
	repo, _ := registry.RepositoryName(*item)

	scPath, err := testenv.ToolPath("source-controller")
	if err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	// source-controller watches every source kind, Buckets and ExternalArtifacts too: its own
	// published CRDs, built beside it by make tools.
	must(t, dir, nil, "kubectl", append(kube, "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(filepath.Dir(filepath.Dir(scPath)), "share", "source-controller"))...)
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		t.Fatal(err)
	}
	storage := freeAddr(t)
	sc := exec.Command(scPath,
		"--storage-path", filepath.Join(dir, "storage"), "--storage-addr", storage, "--storage-adv-addr", storage,
		"--metrics-addr", freeAddr(t), "--health-addr", freeAddr(t), "--enable-leader-election=false", "--watch-all-namespaces")
	sc.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "RUNTIME_NAMESPACE=flux-system")
	logf, _ := os.Create(filepath.Join(dir, "source-controller.log"))
	sc.Stdout, sc.Stderr = logf, logf
	if err := sc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Process.Kill(); sc.Wait(); logf.Close() })

	objects := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: platform-oci, namespace: flux-system}
spec: {url: "oci://%[1]s/%[2]s", insecure: true, interval: 1m}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform-git, namespace: flux-system}
spec: {url: "http://%[1]s/git/platform.git", ref: {branch: main}, interval: 1m}
`, addr, repo)
	os.WriteFile(filepath.Join(dir, "sources.yaml"), []byte(objects), 0o644)
	must(t, dir, nil, "kubectl", append(kube, "apply", "-f", "sources.yaml")...)
	res := run(t, dir, nil, "kubectl", append(kube, "wait", "--for=condition=Ready", "-n", "flux-system", "ocirepository/platform-oci", "gitrepository/platform-git", "--timeout=120s")...)
	if res.Err != nil {
		status := run(t, dir, nil, "kubectl", append(kube, "get", "-n", "flux-system", "ocirepository,gitrepository", "-o", "yaml")...)
		t.Fatalf("Flux's source-controller did not get the sources Ready from sync serve: %v\n%s\nsource-controller log:\n%s", res.Err, status.Stdout, tail(filepath.Join(dir, "source-controller.log")))
	}
	ociRev := must(t, dir, nil, "kubectl", append(kube, "get", "ocirepository", "platform-oci", "-n", "flux-system", "-o", "jsonpath={.status.artifact.revision}")...)
	if !strings.HasPrefix(ociRev, "latest@sha256:") || ociRev == "latest@"+string(item.Descriptor.Digest) {
		t.Fatalf("OCIRepository revision %q, want latest@ the Flux artifact's manifest (not the item's root index %s)", ociRev, item.Descriptor.Digest)
	}
	gitRev := must(t, dir, nil, "kubectl", append(kube, "get", "gitrepository", "platform-git", "-n", "flux-system", "-o", "jsonpath={.status.artifact.revision}")...)
	if gitRev != "main@sha1:"+commit {
		t.Fatalf("GitRepository revision %q, want main@sha1:%s", gitRev, commit)
	}
	t.Logf("Flux's source-controller, from sync serve: OCIRepository oci://%s/%s at %s, GitRepository at %s", addr, repo, ociRev, gitRev)
}

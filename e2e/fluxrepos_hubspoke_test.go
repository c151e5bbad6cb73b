package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// spoke starts an API server (with kube-controller-manager, so Deployments report their
// status) as the spoke cluster name, and gives the hub its kubeconfig as Flux's hub-and-spoke
// layout expects it: Secret cluster-kubeconfig, key value, in the spoke's namespace on the hub.
func (w *fluxWorld) spoke(hub *testenv.Cluster, name string) []string {
	w.t.Helper()
	ctx := context.Background()
	sp := testenv.NewCluster(w.t)
	if err := sp.StartControllerManager(); err != nil {
		w.t.Fatal(err)
	}
	kubeconfig, err := os.ReadFile(sp.Kubeconfig)
	if err != nil {
		w.t.Fatal(err)
	}
	cs, err := hub.Clientset()
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		w.t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "cluster-kubeconfig"}, Data: map[string][]byte{"value": kubeconfig}}
	if _, err := cs.CoreV1().Secrets(name).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	return []string{"--kubeconfig", sp.Kubeconfig}
}

// TestFluxRepoHubSpoke carries fluxcd/flux2-hub-spoke-example from its hub/ entry point:
// discovery follows the hub's Kustomizations (which target the spokes through kubeConfig) into
// clusters/staging and clusters/production, to the charts of cert-manager and ingress-nginx
// (HTTP chart repositories, stand-ins here) and podinfo's (an OCI HelmRepository), with their
// images, for both spokes; the bundle carries them all. One reconciler on the hub (an API
// server) then reconciles both spokes (two more): every Kustomization and the infrastructure
// HelmReleases are Ready on the hub at the repository's revision, while their objects, Helm
// releases and the ClusterIssuer are on each spoke, installed as the ServiceAccounts the hub's
// patches name there, and nothing of theirs is on the hub.
func TestFluxRepoHubSpoke(t *testing.T) {
	w := newFluxWorld(t)
	const url = "https://github.com/fluxcd/flux2-hub-spoke-example"
	files := snapshotFiles(t, "flux2-hub-spoke-example")
	files["hub/flux-system/gotk-components.yaml"] = gotkComponents()
	files["hub/flux-system/gotk-sync.yaml"] = gotkSync(url, "hub")
	commit := w.repo(url, files)
	w.helmRepo("https://charts.jetstack.io", standIn("cert-manager", "1.16.0", "quay.io/jetstack/cert-manager-controller:v1.16.0", "cert-manager.io/ClusterIssuer/Cluster"))
	w.helmRepo("https://kubernetes.github.io/ingress-nginx", standIn("ingress-nginx", "4.12.0", "registry.k8s.io/ingress-nginx/controller:v1.12.0"))
	w.upstream("registry.k8s.io", "http://"+w.reg.Host+"/registry.k8s.io")
	dir, err := testenv.PodinfoChart()
	if err != nil {
		t.Fatal(err)
	}
	podinfoChart, err := loader.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.ociChart("ghcr.io/stefanprodan/charts", podinfoChart)
	spec := w.spec(url, "hub")
	res := w.explain(spec)
	for _, spoke := range []string{"staging", "production"} {
		expectArtifact(t, res, "chart", "https://charts.jetstack.io/cert-manager@1.x", "HelmRelease "+spoke+"/cert-manager")
		expectArtifact(t, res, "chart", "https://kubernetes.github.io/ingress-nginx/ingress-nginx@*", "HelmRelease "+spoke+"/ingress-nginx")
		expectArtifact(t, res, "chart", "oci://ghcr.io/stefanprodan/charts/podinfo@", "HelmRelease "+spoke+"/podinfo")
		expectArtifact(t, res, "image", "ghcr.io/stefanprodan/podinfo:", "HelmRelease "+spoke+"/podinfo")
	}
	expectArtifact(t, res, "image", "quay.io/jetstack/cert-manager-controller:v1.16.0", "chart cert-manager 1.16.0")
	expectArtifact(t, res, "image", "registry.k8s.io/ingress-nginx/controller:v1.12.0", "chart ingress-nginx 4.12.0")
	podinfo := expectArtifact(t, res, "image", "ghcr.io/stefanprodan/podinfo:", "HelmRelease staging/podinfo")
	w.pushImages(res)
	os.WriteFile(filepath.Join(w.dir, "ferry.yaml"), []byte(spec), 0o644)
	out := must(t, w.dir, nil, "mirror", "pack", "-f", "ferry.yaml", "--out", "bundle", "--output", "json")
	var packed struct {
		Items int `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &packed); err != nil {
		t.Fatalf("mirror pack --output json: %v\n%s", err, out)
	}
	// The cluster item and one item per artifact (two version ranges of one chart that
	// resolve to the same version are one item).
	names := map[string]bool{}
	for _, a := range res.Artifacts {
		names[a.Name] = true
	}
	if want := 1 + len(names); packed.Items != want {
		t.Fatalf("the bundle carries %d items, want %d: %s", packed.Items, want, out)
	}

	hub, kube := w.packAndReconcile(spec)
	spokes := map[string][]string{"staging": w.spoke(hub, "staging"), "production": w.spoke(hub, "production")}
	rev := "main@sha1:" + commit[:8]
	w.waitReady(kube, "flux-system", "kustomization/flux-system", "gitrepository/flux-system")
	for name, spoke := range spokes {
		w.waitReady(kube, name, "kustomization/tenants", "kustomization/infra-controllers", "kustomization/infra-configs",
			"helmrepository/cert-manager", "helmrepository/ingress-nginx", "helmrepository/podinfo",
			"helmrelease/cert-manager", "helmrelease/ingress-nginx")
		// The tenants' Namespaces and ServiceAccounts (${CLUSTER_NAME} substituted on the hub)
		// are on the spoke.
		for _, o := range [][]string{{"namespace", "cert-manager"}, {"namespace", "ingress-nginx"}, {"namespace", "podinfo"},
			{"serviceaccount", "flux-cluster-admin", "-n", name}, {"serviceaccount", "flux-restricted", "-n", name}} {
			must(t, w.dir, nil, "kubectl", append(append(spoke, "get"), o...)...)
			if res := run(t, w.dir, nil, "kubectl", append(append(kube, "get"), o...)...); res.Err == nil && o[0] == "namespace" {
				t.Fatalf("%s %s is on the hub", o[0], o[1])
			}
		}
		// The releases are on the spoke, stored there, installed as flux-cluster-admin.
		for _, rel := range []string{"cert-manager", "ingress-nginx"} {
			img := jsonpath(t, w.dir, spoke, "deployment", rel, "-n", rel, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
			if !strings.Contains(img, rel) {
				t.Fatalf("%s: the %s Deployment runs %q", name, rel, img)
			}
			if secrets := jsonpath(t, w.dir, spoke, "secrets", "-n", rel, "-l", "owner=helm,name="+rel, "-o", "name"); secrets == "" {
				t.Fatalf("%s: no Helm storage Secret of %s on the spoke", name, rel)
			}
			if res := run(t, w.dir, nil, "kubectl", append(kube, "get", "deployment", rel, "-n", rel)...); res.Err == nil {
				t.Fatalf("the %s Deployment is on the hub", rel)
			}
		}
		mgr := jsonpath(t, w.dir, spoke, "clusterissuer", "letsencrypt", "-o", "jsonpath={.metadata.labels.kustomize\\.toolkit\\.fluxcd\\.io/namespace}")
		if mgr != name {
			t.Fatalf("%s: ClusterIssuer letsencrypt owner namespace %q, want %s (applied by the hub's %s/infra-configs)", name, mgr, name, name)
		}
	}
	// podinfo's release installs on each spoke as flux-restricted, with the carried image;
	// without a kubelet its Pods never run, so the release and the apps Kustomization wait.
	for name, spoke := range spokes {
		w.waitPodinfo(kube, spoke, podinfo.Source, 180*time.Second)
		host := jsonpath(t, w.dir, spoke, "ingress", "podinfo", "-n", "podinfo", "-o", "jsonpath={.spec.rules[0].host}")
		if host != "podinfo."+name {
			t.Fatalf("%s: podinfo's Ingress host %q, want podinfo.%s (clusters/%s/apps/podinfo-values.yaml)", name, host, name, name)
		}
	}
	all := fluxGetAll(t, w.dir, kube)
	t.Logf("flux get all -A (hub):\n%s", all)
	for _, k := range []string{"flux-system", "tenants", "infra-controllers", "infra-configs"} {
		expectFluxRow(t, all, "kustomization/"+k, rev, "True")
	}
	expectFluxRow(t, all, "helmrelease/cert-manager", "1.16.0", "True")
	expectFluxRow(t, all, "helmrelease/ingress-nginx", "4.12.0", "True")
}

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/discover"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// Flux's reference repositories, carried as they are (docs/flux.md, "Discovery"): each
// snapshot (../shared/fixtures/flux-repos, outside Ferry's repository) is committed to a local
// Git server under its GitHub URL, and mirror packs it with a Flux entry point and nothing
// hand-listed. What lives on the internet is replaced by stand-ins of the same name and version
// on loopback, reached through the spec's upstreams: (a registry for ghcr.io, quay.io,
// docker.io and public.ecr.aws, a Helm repository per chart repository, the Git server for
// github.com). podinfo is real (its chart and image from its Go module); the other charts are
// stand-ins that install their CRDs and a Deployment scaled to zero that names the image they
// stand in for. flux bootstrap's own files are placeholders in the snapshots: the test writes
// them as bootstrap would (the flux-system namespace, the controllers' ServiceAccounts, RBAC
// and Deployments, and gotk-sync.yaml's GitRepository and Kustomization).

// fluxFixtures returns the folder of the reference repositories' snapshots: $FERRY_FLUX_REPOS,
// or shared/fixtures/flux-repos beside the checkout (or beside /work/main, where the
// workplace keeps it).
func fluxFixtures(t *testing.T) string {
	t.Helper()
	var tried []string
	cands := []string{os.Getenv("FERRY_FLUX_REPOS")}
	if wd, err := os.Getwd(); err == nil {
		cands = append(cands, filepath.Join(wd, "..", "..", "shared", "fixtures", "flux-repos"))
	}
	cands = append(cands, "/work/shared/fixtures/flux-repos")
	for _, c := range cands {
		if c == "" {
			continue
		}
		tried = append(tried, c)
		if _, err := os.Stat(filepath.Join(c, "flux2-multi-tenancy.tar.gz")); err == nil {
			return c
		}
	}
	t.Fatalf("Flux's reference repositories are not found (tried %s); set FERRY_FLUX_REPOS to the folder holding flux2-*.tar.gz", strings.Join(tried, ", "))
	return ""
}

// snapshotFiles reads a snapshot tarball (git archive) into path → content.
func snapshotFiles(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(fluxFixtures(t), name+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		p := strings.TrimPrefix(h.Name, name+"/")
		files[p] = string(b)
	}
	if len(files) == 0 {
		t.Fatalf("snapshot %s holds no files", name)
	}
	return files
}

// gotkComponents is what flux bootstrap writes as gotk-components.yaml, less the CRDs (sync
// installs Flux's CRDs itself): the namespace, the controllers' ServiceAccounts, the binding
// that makes kustomize-controller and helm-controller cluster admins, and the controllers'
// Deployments, which sync leaves out.
func gotkComponents() string {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Namespace
metadata:
  name: flux-system
  labels: {app.kubernetes.io/instance: flux-system, app.kubernetes.io/part-of: flux}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: cluster-reconciler-flux-system
  labels: {app.kubernetes.io/instance: flux-system, app.kubernetes.io/part-of: flux}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: kustomize-controller, namespace: flux-system}
- {kind: ServiceAccount, name: helm-controller, namespace: flux-system}
`)
	for _, c := range []string{"source-controller", "kustomize-controller", "helm-controller", "notification-controller"} {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: %[1]s
  namespace: flux-system
  labels: {app.kubernetes.io/component: %[1]s, app.kubernetes.io/instance: flux-system, app.kubernetes.io/part-of: flux}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: flux-system
  labels: {app.kubernetes.io/component: %[1]s, app.kubernetes.io/instance: flux-system, app.kubernetes.io/part-of: flux}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      serviceAccountName: %[1]s
      containers:
      - name: manager
        image: ghcr.io/fluxcd/%[1]s:v1.0.0
        args: [--watch-all-namespaces=true, --log-level=info]
`, c)
	}
	return b.String()
}

// gotkSync is flux bootstrap's gotk-sync.yaml for a repository URL and a cluster path.
func gotkSync(url, path string) string {
	return fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m0s
  ref:
    branch: main
  url: %s
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 10m0s
  path: ./%s
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
`, url, path)
}

// standIn is a stand-in chart: the CRDs the real chart installs that the repositories' other
// objects use, and a Deployment scaled to zero naming the image it stands in for.
func standIn(name, version, image string, crds ...string) *chart.Chart {
	mod := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version, AppVersion: version,
			Description: "a stand-in made by Ferry's tests for the chart of the same name", Type: "application"},
		ModTime: mod,
	}
	tpl := func(file, s string) {
		c.Templates = append(c.Templates, &common.File{Name: "templates/" + file, Data: []byte(s), ModTime: mod})
	}
	tpl("deployment.yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  replicas: 0
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec:
      containers:
      - name: main
        image: %s
`, image))
	for i, crd := range crds {
		// group/Kind/scope
		p := strings.Split(crd, "/")
		group, kind, scope := p[0], p[1], p[2]
		plural := strings.ToLower(kind) + "s"
		if strings.HasSuffix(plural, "ss") {
			plural = strings.ToLower(kind) + "es"
		}
		// Groups under k8s.io are protected: their CRDs say where the API was approved.
		approved := ""
		if strings.HasSuffix(group, ".k8s.io") {
			approved = "\n  annotations: {api-approved.kubernetes.io: \"https://github.com/kubernetes-sigs/gateway-api/pull/1538\"}"
		}
		tpl(fmt.Sprintf("crd-%d.yaml", i), fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[3]s.%[1]s%[6]s
spec:
  group: %[1]s
  names: {kind: %[2]s, listKind: %[2]sList, plural: %[3]s, singular: %[4]s}
  scope: %[5]s
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`, group, kind, plural, strings.ToLower(kind), scope, approved))
	}
	return c
}

// fluxWorld is the stand-in internet of one reference repository.
type fluxWorld struct {
	t         *testing.T
	dir       string
	git       *testenv.GitServer
	reg       *testenv.Registry
	upstreams []string // "prefix mirror"
	log       string   // the reconciler's log of the last packAndReconcile
	// tenancy, when set, is the lockdown packAndReconcile's reconciler runs with.
	tenancy *reconcile.Tenancy
}

func newFluxWorld(t *testing.T) *fluxWorld {
	w := &fluxWorld{t: t, dir: t.TempDir(), git: testenv.NewGitServer(t), reg: testenv.NewRegistry(t)}
	for _, host := range []string{"ghcr.io", "quay.io", "docker.io", "public.ecr.aws"} {
		w.upstream(host, "http://"+w.reg.Host+"/"+host)
	}
	return w
}

func (w *fluxWorld) upstream(prefix, mirror string) {
	w.upstreams = append(w.upstreams, prefix+" "+mirror)
}

// repo commits files to the Git server as the repository at GitHub URL url, branch main.
func (w *fluxWorld) repo(url string, files map[string]string) string {
	name := url[strings.LastIndex(url, "/")+1:]
	commit, err := w.git.CreateRepo(context.Background(), name, files)
	if err != nil {
		w.t.Fatal(err)
	}
	w.upstream(url, w.git.RepoURL(name))
	return commit
}

// helmRepo serves charts as the HTTP chart repository at url.
func (w *fluxWorld) helmRepo(url string, charts ...*chart.Chart) *testenv.HelmRepo {
	h := testenv.NewHelmRepo(w.t)
	for _, c := range charts {
		if _, err := chartutil.Save(c, h.Dir); err != nil {
			w.t.Fatal(err)
		}
	}
	// AddChart reindexes; a throwaway chart keeps the index sound and is never asked for.
	if _, err := h.AddChart("ferry-test-index", "0.0.1", nil, nil); err != nil {
		w.t.Fatal(err)
	}
	w.upstream(url, h.URL)
	return h
}

// podinfoChart adds podinfo's real chart to h.
func podinfoChart(t *testing.T, h *testenv.HelmRepo) {
	dir, err := testenv.PodinfoChart()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddChartDir(dir, ""); err != nil {
		t.Fatal(err)
	}
}

// ociChart pushes a chart to the stand-in registry at repo ("quay.io/jetstack/charts").
func (w *fluxWorld) ociChart(repo string, c *chart.Chart) {
	out := w.t.TempDir()
	p, err := chartutil.Save(c, out)
	if err != nil {
		w.t.Fatal(err)
	}
	must(w.t, w.dir, nil, "helm", "push", p, "oci://"+w.reg.Host+"/"+repo, "--plain-http")
}

// ociArtifact pushes files as a Flux artifact (flux push artifact) to the stand-in registry
// at ref ("ghcr.io/kyverno/manifests/kyverno:v1.14.4").
func (w *fluxWorld) ociArtifact(ref string, files map[string]string) {
	src := w.t.TempDir()
	for p, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), []byte(c), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	must(w.t, w.dir, nil, "flux", "push", "artifact", "oci://"+w.reg.Host+"/"+ref, "--path", src,
		"--source", "https://github.com/ferry-gitops/stand-in", "--revision", "stand-in@sha1:0000000000000000000000000000000000000000", "--insecure-registry")
}

// spec writes the mirror spec: the repository at url, branch main, with one entry point.
func (w *fluxWorld) spec(url, path string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: fleet\n    url: %s\n    ref: {branch: main}\nflux:\n  - git: fleet\n    path: %s\nupstreams:\n", url, path)
	for _, u := range w.upstreams {
		p := strings.SplitN(u, " ", 2)
		fmt.Fprintf(&b, "  - prefix: %s\n    mirror: %s\n", p[0], p[1])
	}
	return b.String()
}

// explain runs mirror pack --explain --output json on the spec.
func (w *fluxWorld) explain(spec string) discover.Result {
	w.t.Helper()
	os.WriteFile(filepath.Join(w.dir, "ferry.yaml"), []byte(spec), 0o644)
	out := must(w.t, w.dir, nil, "mirror", "pack", "-f", "ferry.yaml", "--explain", "--output", "json")
	var res discover.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		w.t.Fatalf("mirror pack --explain --output json: %v\n%s", err, out)
	}
	text := must(w.t, w.dir, nil, "mirror", "pack", "-f", "ferry.yaml", "--explain")
	w.t.Logf("mirror pack --explain:\n%s", text)
	return res
}

// pushImages pushes a stand-in for every image discovery found: podinfo's real image for
// podinfo, a small random image otherwise, at the same repository and tag.
func (w *fluxWorld) pushImages(res discover.Result) {
	w.t.Helper()
	for _, a := range res.Artifacts {
		if a.Kind != "image" || strings.Contains(a.Source, "@") && !strings.Contains(a.Source, ":") {
			continue
		}
		ref := w.reg.Host + "/" + a.Source
		if strings.Contains(a.Source, "/stefanprodan/podinfo:") {
			if _, err := testenv.PushPodinfo(context.Background(), ref, false); err != nil {
				w.t.Fatal(err)
			}
			continue
		}
		img, err := testenv.RandomImage("linux/amd64", 1024, 1)
		if err != nil {
			w.t.Fatal(err)
		}
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := remote.Write(r, img); err != nil {
			w.t.Fatalf("push stand-in %s: %v", ref, err)
		}
	}
}

// artifactSources returns the sources discovery found of a kind.
func artifactSources(res discover.Result, kind string) []string {
	var out []string
	for _, a := range res.Artifacts {
		if string(a.Kind) == kind {
			out = append(out, a.Source)
		}
	}
	sort.Strings(out)
	return out
}

// expectArtifact fails unless discovery found an artifact of kind whose source has prefix,
// needed by an object whose description contains needer.
func expectArtifact(t *testing.T, res discover.Result, kind, prefix, needer string) discover.Artifact {
	t.Helper()
	var seen []string
	for _, a := range res.Artifacts {
		if string(a.Kind) != kind || !strings.HasPrefix(a.Source, prefix) {
			continue
		}
		for _, n := range a.NeededBy {
			if strings.Contains(n, needer) {
				return a
			}
		}
		seen = append(seen, fmt.Sprintf("%s needed by %v", a.Source, a.NeededBy))
	}
	if len(seen) > 0 {
		t.Fatalf("no %s %s… is needed by %q: %s", kind, prefix, needer, strings.Join(seen, "; "))
	}
	t.Fatalf("discovery found no %s %s…; it found %v", kind, prefix, artifactSources(res, kind))
	return discover.Artifact{}
}

// packAndReconcile packs the spec, imports the bundle into a new cluster's cache (with
// kube-controller-manager, so Deployments report their status) and runs sync's reconciler
// pass after pass until the test ends.
func (w *fluxWorld) packAndReconcile(spec string) (*testenv.Cluster, []string) {
	w.t.Helper()
	dir := filepath.Join(w.dir, fmt.Sprintf("pack-%d", time.Now().UnixNano()))
	os.MkdirAll(dir, 0o755)
	cacheDir, cluster := packImportCluster(w.t, dir, spec)
	if err := cluster.StartControllerManager(); err != nil {
		w.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "reconcile.log"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.log = logf.Name()
	r, err := reconcile.New(cluster.Config, cacheDir, reconcile.Options{Logger: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})), Tenancy: w.tenancy})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := ""
		for ctx.Err() == nil {
			if err := r.ReconcileAll(ctx); err != nil && err.Error() != last && ctx.Err() == nil {
				last = err.Error()
				w.t.Logf("reconcile pass: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	w.t.Cleanup(func() { stop(); wg.Wait() })
	return cluster, []string{"--kubeconfig", cluster.Kubeconfig}
}

// waitReady waits until every named object (kind/name in namespace) exists and is Ready.
func (w *fluxWorld) waitReady(kube []string, ns string, objs ...string) {
	w.t.Helper()
	deadline := time.Now().Add(240 * time.Second)
	for {
		res := run(w.t, w.dir, nil, "kubectl", append(append(kube, "wait", "--for=condition=Ready", "-n", ns, "--timeout=10s"), objs...)...)
		if res.Err == nil {
			return
		}
		if time.Now().After(deadline) {
			all := run(w.t, w.dir, nil, "flux", append(kube, "get", "all", "-A")...)
			w.t.Fatalf("kubectl wait Ready %s: %v\n%s%s\nflux get all -A:\n%s%s\nreconcile log:\n%s", strings.Join(objs, " "), res.Err, res.Stdout, res.Stderr, all.Stdout, all.Stderr, tail(w.log))
		}
		time.Sleep(time.Second)
	}
}

// waitPodinfo waits, up to within, until podinfo's Deployment (namespace podinfo) in the
// cluster of onto runs image; kube is the cluster whose Flux objects the failure shows.
func (w *fluxWorld) waitPodinfo(kube, onto []string, image string, within time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := run(w.t, w.dir, nil, "kubectl", append(onto, "get", "deployment", "podinfo", "-n", "podinfo", "-o", "jsonpath={.spec.template.spec.containers[0].image}")...)
		if res.Err == nil && strings.TrimSpace(res.Stdout) == image {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("podinfo's Deployment (%s) not applied with %s: %v %s%s\n%s\nreconcile log:\n%s", strings.Join(onto, " "), image, res.Err, res.Stdout, res.Stderr, fluxGetAll(w.t, w.dir, kube), tail(w.log))
		}
		time.Sleep(time.Second)
	}
}

// fluxGetAll runs flux get all -A and returns its output.
func fluxGetAll(t *testing.T, dir string, kube []string) string {
	t.Helper()
	res := run(t, dir, nil, "flux", append(kube, "get", "all", "-A")...)
	if res.Err != nil {
		t.Fatalf("flux get all -A: %v\n%s%s", res.Err, res.Stdout, res.Stderr)
	}
	return res.Stdout + res.Stderr
}

// expectFluxRow fails unless flux get all's output has a row for name containing every part.
func expectFluxRow(t *testing.T, out, name string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[0] == name || f[1] == name) {
			for _, p := range parts {
				if !strings.Contains(line, p) {
					t.Fatalf("flux get all: row %s does not say %q:\n%s", name, p, out)
				}
			}
			return
		}
	}
	t.Fatalf("flux get all: no row %s:\n%s", name, out)
}

// jsonpath reads one field of an object.
func jsonpath(t *testing.T, dir string, kube []string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(must(t, dir, nil, "kubectl", append(kube, append([]string{"get"}, args...)...)...))
}

// TestFluxRepoMultiTenancy carries fluxcd/flux2-multi-tenancy: per cluster (staging,
// production), discovery follows the infrastructure Kustomizations to Kyverno's OCI manifests
// (an OCIRepository of source.toolkit.fluxcd.io/v1beta2, which sync applies as v1) and the
// tenants to the dev-team GitRepository (the repository's dev-team branch, a stand-in here) and
// its podinfo HelmRelease, with podinfo's chart and images. Every Kustomization, source and
// the Kyverno policies become Ready on the cluster; podinfo's HelmRelease installs (its
// Deployment and Service are applied as the tenant) but needs running Pods to be Ready, which
// a cluster without a kubelet has not.
func TestFluxRepoMultiTenancy(t *testing.T) {
	ctx := context.Background()
	w := newFluxWorld(t)
	const url = "https://github.com/fluxcd/flux2-multi-tenancy"
	files := snapshotFiles(t, "flux2-multi-tenancy")
	for _, c := range []string{"staging", "production"} {
		files["clusters/"+c+"/flux-system/gotk-components.yaml"] = gotkComponents()
		files["clusters/"+c+"/flux-system/gotk-sync.yaml"] = gotkSync(url, "clusters/"+c)
	}
	// The dev-team branch (the tenant's repository) holds podinfo by HelmRelease per cluster.
	devTeam := map[string]string{
		"base/podinfo/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: apps\nresources: [repository.yaml, release.yaml]\n",
		"base/podinfo/repository.yaml":    "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: podinfo\nspec:\n  interval: 5m\n  url: https://stefanprodan.github.io/podinfo\n",
		"base/podinfo/release.yaml":       "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\nspec:\n  serviceAccountName: dev-team\n  interval: 5m\n  chart:\n    spec:\n      chart: podinfo\n      version: \">=6.0.0\"\n      sourceRef: {kind: HelmRepository, name: podinfo}\n  values:\n    replicaCount: 1\n",
		"staging/kustomization.yaml":      "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base/podinfo]\n",
		"production/kustomization.yaml":   "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../base/podinfo]\n",
	}
	name := "flux2-multi-tenancy"
	if _, err := w.git.CreateRepo(ctx, name, devTeam); err != nil {
		t.Fatal(err)
	}
	if err := w.git.Branch(ctx, name, "dev-team"); err != nil {
		t.Fatal(err)
	}
	for p := range devTeam {
		if _, ok := files[p]; !ok {
			files[p] = "" // main holds the snapshot alone
		}
	}
	commit, err := w.git.Commit(ctx, name, files, "flux2-multi-tenancy snapshot, with flux bootstrap's files")
	if err != nil {
		t.Fatal(err)
	}
	w.upstream(url, w.git.RepoURL(name))
	helm := w.helmRepo("https://stefanprodan.github.io/podinfo")
	podinfoChart(t, helm)
	w.ociArtifact("ghcr.io/kyverno/manifests/kyverno:v1.14.4", map[string]string{
		"kyverno.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kyverno\n" +
			"---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: clusterpolicies.kyverno.io\nspec:\n  group: kyverno.io\n  names: {kind: ClusterPolicy, listKind: ClusterPolicyList, plural: clusterpolicies, singular: clusterpolicy}\n  scope: Cluster\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n" +
			"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kyverno-admission-controller\n  namespace: kyverno\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: kyverno}}\n  template:\n    metadata: {labels: {app: kyverno}}\n    spec:\n      containers:\n      - name: kyverno\n        image: ghcr.io/kyverno/kyverno:v1.14.4\n",
	})

	for _, cl := range []string{"staging", "production"} {
		t.Run(cl, func(t *testing.T) {
			w.t = t
			// staging with lockdown on (docs/tenancy.md), as the repository's own
			// clusters/*/flux-system patches lock Flux's controllers down.
			w.tenancy = nil
			if cl == "staging" {
				w.tenancy = agent.TenancyConfig{MultiTenant: true}.Reconcile()
			}
			spec := w.spec(url, "clusters/"+cl)
			res := w.explain(spec)
			expectArtifact(t, res, "git", url+"@branch:main", "ferry.yaml flux[0]")
			expectArtifact(t, res, "git", url+"@branch:dev-team", "Kustomization apps/dev-team")
			expectArtifact(t, res, "image", "ghcr.io/kyverno/manifests/kyverno@v1.14.4", "Kustomization flux-system/kyverno-controller")
			expectArtifact(t, res, "chart", "https://stefanprodan.github.io/podinfo/podinfo@>=6.0.0", "HelmRelease apps/podinfo")
			podinfo := expectArtifact(t, res, "image", "ghcr.io/stefanprodan/podinfo:", "HelmRelease apps/podinfo")
			expectArtifact(t, res, "image", "ghcr.io/kyverno/kyverno:v1.14.4", "Kustomization flux-system/kyverno-controller")
			for _, a := range res.Artifacts {
				if strings.Contains(a.Source, "fluxcd/") && a.Kind == "image" {
					t.Fatalf("discovery carries %s, an image of Flux's controllers, which sync replaces", a.Source)
				}
			}
			w.pushImages(res)
			_, kube := w.packAndReconcile(spec)
			w.waitReady(kube, "flux-system", "kustomization/flux-system", "kustomization/kyverno", "kustomization/kyverno-controller",
				"kustomization/kyverno-policies", "kustomization/tenants", "gitrepository/flux-system", "ocirepository/kyverno-controller")
			w.waitReady(kube, "apps", "kustomization/dev-team", "gitrepository/dev-team", "helmrepository/podinfo")
			out := fluxGetAll(t, w.dir, kube)
			t.Logf("flux get all -A (%s):\n%s", cl, out)
			rev := "main@sha1:" + commit[:8]
			expectFluxRow(t, out, "kustomization/flux-system", rev, "True")
			expectFluxRow(t, out, "kustomization/tenants", rev, "True")
			expectFluxRow(t, out, "kustomization/kyverno-policies", rev, "True")
			expectFluxRow(t, out, "kustomization/kyverno-controller", "v1.14.4@sha256:", "True")
			expectFluxRow(t, out, "kustomization/dev-team", "dev-team@sha1:", "True")
			// Kyverno's policies are applied; podinfo's release is installed as the tenant.
			jsonpath(t, w.dir, kube, "clusterpolicy", "verify-flux-images", "-o", "name")
			image := jsonpath(t, w.dir, kube, "deployment", "podinfo", "-n", "apps", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
			if image != podinfo.Source {
				t.Fatalf("podinfo's Deployment runs %s, want %s", image, podinfo.Source)
			}
			// The tenant's objects were applied, and its release made, as its ServiceAccount;
			// the platform's as Flux's kustomize-controller account.
			log, err := os.ReadFile(w.log)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				`msg=applying kustomization=apps/dev-team as=system:serviceaccount:apps:dev-team`,
				`msg=releasing helmrelease=apps/podinfo as=system:serviceaccount:apps:dev-team`,
				`msg=applying kustomization=flux-system/tenants as=system:serviceaccount:flux-system:kustomize-controller`,
			} {
				if !strings.Contains(string(log), want) {
					t.Fatalf("the reconcile log does not say %q:\n%s", want, tail(w.log))
				}
			}
			// flux bootstrap's controllers are not applied: sync reconciles in their place.
			if res := run(t, w.dir, nil, "kubectl", append(kube, "get", "deployment", "kustomize-controller", "-n", "flux-system")...); res.Err == nil {
				t.Fatalf("Flux's kustomize-controller Deployment was applied: %s", res.Stdout)
			}
		})
	}
}

package reconcile_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	swv1beta1 "github.com/fluxcd/source-watcher/api/v2/v1beta1"
	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
	"github.com/ferry-gitops/ferry/spec"
	"github.com/ferry-gitops/ferry/verify"
)

// cluster and gitServer are shared by every test of the package; TestMain starts them and
// installs the Flux CRDs.
var (
	cluster   *testenv.Cluster
	gitServer *testenv.GitServer
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return m.Run() // fuzzing the manifest decoder needs no servers, nor do its workers
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ferry-reconcile-")
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
	if gitServer, err = testenv.StartGitServer(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer gitServer.Stop()
	if err := reconcile.InstallCRDs(ctx, cluster.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// env is one test's Git repository, cache, reconciler and namespace for its Kustomizations.
type env struct {
	t        *testing.T
	repo     string
	ns       string
	cacheDir string
	signer   *testbundle.Signer
	seq      uint64
	last     digest.Digest
	r        *reconcile.Reconciler
	c        client.Client
	logs     *testenv.SyncBuffer
}

// newEnv creates the repository repo holding files, a namespace for Kustomizations named like
// it, an empty cache and a reconciler over it. Kustomizations the test creates are deleted
// when it ends, so other tests' ReconcileAll does not see them.
func newEnv(t *testing.T, repo string, files map[string]string) (*env, string) {
	t.Helper()
	ctx := context.Background()
	commit, err := gitServer.CreateRepo(ctx, repo, files)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, repo: repo, ns: "ks-" + repo, cacheDir: t.TempDir(), signer: testbundle.NewSigner(t), logs: &testenv.SyncBuffer{}}
	e.r, err = reconcile.New(cluster.Config, e.cacheDir, reconcile.Options{Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.r.Close)
	e.c = e.r.Client()
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		removeAll(e.c, e.ns)
	})
	e.createSource("platform", gitServer.RepoURL(repo))
	return e, commit
}

// createSource creates the GitRepository name of e's namespace, for url at branch main.
func (e *env) createSource(name, url string) {
	e.t.Helper()
	g := &sourcev1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: sourcev1.GitRepositorySpec{
			URL:       url,
			Reference: &sourcev1.GitRepositoryRef{Branch: "main"},
			Interval:  metav1.Duration{Duration: time.Minute},
		},
	}
	if err := e.c.Create(context.Background(), g); err != nil {
		e.t.Fatalf("create gitrepository %s: %v", name, err)
	}
}

// rev is the revision Flux (and sync) write for commit of branch main.
func rev(commit string) string { return "main@sha1:" + commit }

// commit commits files (an empty content removes a file) and returns the new commit.
func (e *env) commit(files map[string]string) string {
	e.t.Helper()
	c, err := gitServer.Commit(context.Background(), e.repo, files, "change")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// importBundle carries the repository's main branch as Git item "platform" in a signed bundle
// (the next sequence) and imports it into the cache.
func (e *env) importBundle() {
	e.t.Helper()
	importWithCluster(e, nil)
}

// nextBundle starts e's next bundle (the next sequence, chained to the last) in a fresh layout,
// with the repository's main branch as Git item "platform".
func (e *env) nextBundle() (dir string, l *bundle.Layout, b *bundle.Bundle) {
	e.t.Helper()
	dir = e.t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.seq++
	b = &bundle.Bundle{Sequence: e.seq, Created: testbundle.Created, Expires: testbundle.Created.Add(30 * 24 * time.Hour), Previous: e.last}
	item, err := fetch.Git(context.Background(), l, spec.Git{Name: "platform", URL: gitServer.RepoURL(e.repo), Ref: spec.GitRef{Branch: "main"}}, &fetch.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	b.Items = append(b.Items, item)
	return dir, l, b
}

// signAndImport signs b, writes it into l (at dir) and imports it into e's cache.
func (e *env) signAndImport(dir string, l *bundle.Layout, b *bundle.Bundle) {
	e.t.Helper()
	ctx := context.Background()
	root, _, err := b.Descriptor()
	if err != nil {
		e.t.Fatal(err)
	}
	if root, err = bundle.Write(ctx, l, b, e.signer.Sign(e.t, l, root)); err != nil {
		e.t.Fatal(err)
	}
	e.last = root.Digest
	c, err := cache.Open(e.cacheDir)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	policy := verify.Policy{Keys: []verify.TrustedKey{e.signer.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	read := func(opts ...bundle.ReadOption) (*bundle.Result, error) { return bundle.ReadLayout(ctx, dir, opts...) }
	if _, err := c.Import(ctx, read, policy); err != nil {
		e.t.Fatalf("import bundle %d: %v", e.seq, err)
	}
}

// kustomization is a Kustomization of e's namespace building path of item "platform".
func (e *env) kustomization(name, path string, prune bool, dependsOn ...string) *kustomizev1.Kustomization {
	k := &kustomizev1.Kustomization{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: kustomizev1.KustomizationSpec{
			SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: "platform", Namespace: e.ns},
			Path:      path,
			Interval:  metav1.Duration{Duration: time.Minute},
			Prune:     prune,
		},
	}
	for _, d := range dependsOn {
		k.Spec.DependsOn = append(k.Spec.DependsOn, kustomizev1.DependencyReference{Name: d})
	}
	return k
}

// create creates Kustomizations in the order given.
func (e *env) create(ks ...*kustomizev1.Kustomization) {
	e.t.Helper()
	for _, k := range ks {
		if err := e.c.Create(context.Background(), k); err != nil {
			e.t.Fatalf("create %s: %v", k.Name, err)
		}
	}
}

// get reads a Kustomization of e's namespace.
func (e *env) get(name string) *kustomizev1.Kustomization {
	e.t.Helper()
	var k kustomizev1.Kustomization
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: name}, &k); err != nil {
		e.t.Fatal(err)
	}
	return &k
}

// ready returns a Kustomization's Ready condition, failing the test when it has none.
func (e *env) ready(name string) (*kustomizev1.Kustomization, metav1.Condition) {
	e.t.Helper()
	k := e.get(name)
	c := apimeta.FindStatusCondition(k.Status.Conditions, meta.ReadyCondition)
	if c == nil {
		e.t.Fatalf("kustomization %s has no Ready condition: %+v", name, k.Status)
	}
	return k, *c
}

// expectReady checks that a Kustomization is Ready at commit.
func (e *env) expectReady(name, commit string) *kustomizev1.Kustomization {
	e.t.Helper()
	k, c := e.ready(name)
	if c.Status != metav1.ConditionTrue || c.Reason != meta.ReconciliationSucceededReason || c.Message != "Applied revision: "+rev(commit) {
		e.t.Fatalf("kustomization %s: Ready = %s %s %q, want True %s %q", name, c.Status, c.Reason, c.Message, meta.ReconciliationSucceededReason, "Applied revision: "+rev(commit))
	}
	if k.Status.LastAppliedRevision != rev(commit) || k.Status.LastAttemptedRevision != rev(commit) {
		e.t.Fatalf("kustomization %s: lastApplied %q lastAttempted %q, want %s", name, k.Status.LastAppliedRevision, k.Status.LastAttemptedRevision, commit)
	}
	if k.Status.ObservedGeneration != k.Generation || c.ObservedGeneration != k.Generation {
		e.t.Fatalf("kustomization %s: observedGeneration %d (condition %d), generation %d", name, k.Status.ObservedGeneration, c.ObservedGeneration, k.Generation)
	}
	e.expectKstatus(name, kstatus.CurrentStatus)
	return k
}

// expectKstatus checks what kstatus, as kubectl and Flux's health checks use it, makes of a
// Kustomization's status: Current when Ready, InProgress while Reconciling, Failed when Stalled.
func (e *env) expectKstatus(name string, want kstatus.Status) {
	e.t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kustomizev1.GroupVersion.WithKind(kustomizev1.KustomizationKind))
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: name}, u); err != nil {
		e.t.Fatal(err)
	}
	res, err := kstatus.Compute(u)
	if err != nil {
		e.t.Fatalf("kustomization %s: kstatus: %v", name, err)
	}
	if res.Status != want {
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		e.t.Fatalf("kustomization %s: kstatus %s (%s), want %s; conditions %v", name, res.Status, res.Message, want, conds)
	}
}

// expectNotReady checks a Kustomization's Ready condition is False with reason and a message
// holding every one of parts.
func (e *env) expectNotReady(name, reason string, parts ...string) {
	e.t.Helper()
	_, c := e.ready(name)
	if c.Status != metav1.ConditionFalse || c.Reason != reason {
		e.t.Fatalf("kustomization %s: Ready = %s %s %q, want False %s", name, c.Status, c.Reason, c.Message, reason)
	}
	for _, p := range parts {
		if !strings.Contains(c.Message, p) {
			e.t.Fatalf("kustomization %s: message %q does not say %q", name, c.Message, p)
		}
	}
}

// configMap reads a ConfigMap; ok is false when it does not exist.
func (e *env) configMap(ns, name string) (cm corev1.ConfigMap, ok bool) {
	e.t.Helper()
	err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &cm)
	if apierrors.IsNotFound(err) {
		return cm, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return cm, true
}

// applied returns the Kustomizations the reconciler logged as applied, in order.
func (e *env) applied() []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec struct {
			Msg           string `json:"msg"`
			Kustomization string `json:"kustomization"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "applied" && rec.Kustomization != "" {
			out = append(out, rec.Kustomization)
		}
	}
	return out
}

// configMapYAML is a ConfigMap manifest; an empty namespace leaves it out.
func configMapYAML(ns, name, value string) string {
	s := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s + "data:\n  value: " + value + "\n"
}

// kustomizationYAML is a kustomization.yaml listing resources.
func kustomizationYAML(resources ...string) string {
	s := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
	for _, r := range resources {
		s += "  - " + r + "\n"
	}
	return s
}

// removeAll deletes the Kustomizations and HelmReleases of namespace ns and takes their
// finalizers off, so they are gone at once, without being finalized (their objects and
// releases stay), and no later test's ReconcileAll finalizes them.
func removeAll(c client.Client, ns string) {
	ctx := context.Background()
	c.DeleteAllOf(ctx, &kustomizev1.Kustomization{}, client.InNamespace(ns))
	c.DeleteAllOf(ctx, &helmv2.HelmRelease{}, client.InNamespace(ns))
	for _, o := range []client.Object{&sourcev1.GitRepository{}, &sourcev1.OCIRepository{}, &sourcev1.HelmRepository{}, &sourcev1.HelmChart{}, &swv1beta1.ArtifactGenerator{}, &sourcev1.ExternalArtifact{}} {
		c.DeleteAllOf(ctx, o, client.InNamespace(ns))
	}
	noFinalizers := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	var ks kustomizev1.KustomizationList
	if c.List(ctx, &ks, client.InNamespace(ns)) == nil {
		for i := range ks.Items {
			c.Patch(ctx, &ks.Items[i], noFinalizers)
		}
	}
	var hrs helmv2.HelmReleaseList
	if c.List(ctx, &hrs, client.InNamespace(ns)) == nil {
		for i := range hrs.Items {
			c.Patch(ctx, &hrs.Items[i], noFinalizers)
		}
	}
	for _, l := range []client.ObjectList{&sourcev1.GitRepositoryList{}, &sourcev1.OCIRepositoryList{}, &sourcev1.HelmRepositoryList{}, &sourcev1.HelmChartList{}, &swv1beta1.ArtifactGeneratorList{}} {
		if c.List(ctx, l, client.InNamespace(ns)) != nil {
			continue
		}
		items, _ := apimeta.ExtractList(l)
		for _, o := range items {
			c.Patch(ctx, o.(client.Object), noFinalizers)
		}
	}
}

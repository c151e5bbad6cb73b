package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// sourceReady reads a source's Ready condition and its artifact's revision.
func sourceReady(t *testing.T, c client.Client, obj client.Object, ns, name string) (metav1.Condition, string) {
	t.Helper()
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	var conds []metav1.Condition
	var art *meta.Artifact
	switch o := obj.(type) {
	case *sourcev1.GitRepository:
		conds, art = o.Status.Conditions, o.Status.Artifact
	case *sourcev1.HelmRepository:
		conds, art = o.Status.Conditions, o.Status.Artifact
	case *sourcev1.HelmChart:
		conds, art = o.Status.Conditions, o.Status.Artifact
	case *sourcev1.OCIRepository:
		conds, art = o.Status.Conditions, o.Status.Artifact
	}
	c0 := apimeta.FindStatusCondition(conds, meta.ReadyCondition)
	if c0 == nil {
		t.Fatalf("%s %s/%s has no Ready condition", obj.GetObjectKind().GroupVersionKind().Kind, ns, name)
	}
	rev := ""
	if art != nil {
		rev = art.Revision
	}
	return *c0, rev
}

// A GitRepository resolves to the Git item carried from its URL at its ref: Ready, with Flux's
// revision string, and kstatus Current; one at a ref the bundle does not carry is
// SourceNotCarried, naming the URL, the ref and the spec line, and so is the Kustomization
// reading it.
func TestGitRepositoryFromBundle(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "gitsrc", map[string]string{"app/cm.yaml": configMapYAML("default", "gitsrc-cm", "one")})
	e.importBundle()
	url := gitServer.RepoURL(e.repo)
	dev := &sourcev1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "dev", Namespace: e.ns},
		Spec: sourcev1.GitRepositorySpec{
			URL: url, Reference: &sourcev1.GitRepositoryRef{Branch: "dev"}, Interval: metav1.Duration{Duration: time.Minute},
			SecretRef: &meta.LocalObjectReference{Name: "git-credentials"},
			Ignore:    ptr.To("/docs"),
		},
	}
	if err := e.c.Create(ctx, dev); err != nil {
		t.Fatal(err)
	}
	devK := e.kustomization("dev-app", "app", true)
	devK.Spec.SourceRef.Name = "dev"
	e.create(e.kustomization("app", "app", true), devK)
	if err := e.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with a source the bundle does not carry")
	}

	c, revision := sourceReady(t, e.c, &sourcev1.GitRepository{}, e.ns, "platform")
	if c.Status != metav1.ConditionTrue || c.Reason != meta.SucceededReason || revision != "main@sha1:"+commit ||
		!strings.Contains(c.Message, "stored artifact for revision 'main@sha1:"+commit+"'") || !strings.Contains(c.Message, "bundle item platform") {
		t.Fatalf("platform: Ready %s %s %q, revision %q", c.Status, c.Reason, c.Message, revision)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(sourcev1.GroupVersion.WithKind(sourcev1.GitRepositoryKind))
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "platform"}, u); err != nil {
		t.Fatal(err)
	}
	if res, err := kstatus.Compute(u); err != nil || res.Status != kstatus.CurrentStatus {
		t.Fatalf("platform: kstatus %v %v, want Current", res, err)
	}
	e.expectReady("app", commit)

	c, revision = sourceReady(t, e.c, &sourcev1.GitRepository{}, e.ns, "dev")
	if c.Status != metav1.ConditionFalse || c.Reason != api.SourceNotCarriedReason || revision != "" {
		t.Fatalf("dev: Ready %s %s %q, revision %q; want False %s", c.Status, c.Reason, c.Message, revision, api.SourceNotCarriedReason)
	}
	for _, part := range []string{url + " at branch dev", "it carries that URL at refs/heads/main (item platform)", "git: [{name: dev, url: " + url + ", ref: {branch: dev}}]"} {
		if !strings.Contains(c.Message, part) {
			t.Errorf("dev: message %q does not say %q", c.Message, part)
		}
	}
	e.expectNotReady("dev-app", api.SourceNotCarriedReason, "Source 'GitRepository/"+e.ns+"/dev'", url+" at branch dev")

	// secretRef and ignore are accepted and said to be unused, on a source the bundle does carry.
	var got sourcev1.GitRepository
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "dev"}, &got); err != nil {
		t.Fatal(err)
	}
	got.Spec.Reference = &sourcev1.GitRepositoryRef{Branch: "main"}
	if err := e.c.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	c, revision = sourceReady(t, e.c, &sourcev1.GitRepository{}, e.ns, "dev")
	if c.Status != metav1.ConditionTrue || revision != "main@sha1:"+commit || !strings.Contains(c.Message, "secretRef git-credentials is not used") ||
		!strings.Contains(c.Message, "ignore not applied: the artifact is the tree as mirror packed it") {
		t.Fatalf("dev at main: Ready %s %s %q, revision %q", c.Status, c.Reason, c.Message, revision)
	}
	e.expectReady("dev-app", commit)
}

// A HelmRelease whose chart (or version) the bundle does not carry is SourceNotCarried, naming
// the chart, the repository and the version; its HelmRepository lists what is carried. A
// HelmChart of a carried chart is Ready at the chart's version, and a HelmRelease reading it
// through chartRef releases it.
func TestHelmSourcesFromBundle(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-src", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-src-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")

	missing := h.helmRelease("missing", "")
	missing.Spec.Chart.Spec.Chart = "redis"
	tooNew := h.helmRelease("too-new", "")
	tooNew.Spec.Chart.Spec.Version = ">=2.0.0"
	chart := &sourcev1.HelmChart{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns},
		Spec: sourcev1.HelmChartSpec{
			Chart: "app", Version: "1.x", Interval: metav1.Duration{Duration: time.Minute},
			SourceRef: sourcev1.LocalHelmChartSourceReference{Kind: sourcev1.HelmRepositoryKind, Name: "charts"},
		},
	}
	byRef := h.helmRelease("by-ref", "")
	byRef.Spec.Chart = nil
	byRef.Spec.ChartRef = &helmv2.CrossNamespaceSourceReference{Kind: sourcev1.HelmChartKind, Name: "app"}
	other := &sourcev1.HelmRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: h.ns},
		Spec:       sourcev1.HelmRepositorySpec{URL: "https://charts.example/stable", Interval: metav1.Duration{Duration: time.Minute}},
	}
	for _, o := range []client.Object{missing, tooNew, chart, byRef, other} {
		if err := h.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with charts the bundle does not carry")
	}
	h.expectHR("missing", false, api.SourceNotCarriedReason, "", nil, "chart redis", h.charts.URL, "charts: [{name: redis, repository: "+h.charts.URL)
	h.expectHR("too-new", false, api.SourceNotCarriedReason, "", nil, "chart app", `version ">=2.0.0"`, "it carries versions 1.0.0")
	h.expectHR("by-ref", true, meta.ReconciliationSucceededReason, "1.0.0", []string{"1:1.0.0:deployed"})
	if hr, _ := h.getHR("missing"); hr.Status.HelmChart != h.ns+"/"+h.ns+"-missing" {
		t.Errorf("missing: status.helmChart %q", hr.Status.HelmChart)
	}

	c, revision := sourceReady(t, h.c, &sourcev1.HelmRepository{}, h.ns, "charts")
	if c.Status != metav1.ConditionTrue || !strings.HasPrefix(revision, "sha256:") || !strings.Contains(c.Message, "1 charts carried: app 1.0.0") {
		t.Fatalf("charts: Ready %s %s %q, revision %q", c.Status, c.Reason, c.Message, revision)
	}
	c, _ = sourceReady(t, h.c, &sourcev1.HelmRepository{}, h.ns, "elsewhere")
	if c.Status != metav1.ConditionFalse || c.Reason != api.SourceNotCarriedReason || !strings.Contains(c.Message, "no chart from https://charts.example/stable") {
		t.Fatalf("elsewhere: Ready %s %s %q", c.Status, c.Reason, c.Message)
	}
	c, revision = sourceReady(t, h.c, &sourcev1.HelmChart{}, h.ns, "app")
	if c.Status != metav1.ConditionTrue || revision != "1.0.0" {
		t.Fatalf("helmchart app: Ready %s %s %q, revision %q", c.Status, c.Reason, c.Message, revision)
	}
}

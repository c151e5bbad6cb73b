package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	swv1beta1 "github.com/fluxcd/source-watcher/api/v2/v1beta1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/reconcile"
)

// generator is the ArtifactGenerator of flux2-kustomize-helm-example, over the GitRepository
// source of e's namespace.
func generator(ns, name, source string) *swv1beta1.ArtifactGenerator {
	return &swv1beta1.ArtifactGenerator{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: swv1beta1.ArtifactGeneratorSpec{
			Sources: []swv1beta1.SourceReference{{Alias: "monorepo", Kind: sourcev1.GitRepositoryKind, Name: source}},
			OutputArtifacts: []swv1beta1.OutputArtifact{
				{Name: name + "-infrastructure", OriginRevision: "@monorepo", Copy: []swv1beta1.CopyOperation{{From: "@monorepo/infrastructure/**", To: "@artifact/"}}},
				{Name: name + "-apps", OriginRevision: "@monorepo", Copy: []swv1beta1.CopyOperation{
					{From: "@monorepo/apps/base/**", To: "@artifact/base/"},
					{From: "@monorepo/apps/production/**", To: "@artifact/production/", Exclude: []string{"*.md"}},
				}},
			},
		},
	}
}

// onArtifact is a Kustomization of e's namespace building path of the ExternalArtifact art.
func (e *env) onArtifact(name, art, path string) *kustomizev1.Kustomization {
	k := e.kustomization(name, path, true)
	k.Spec.SourceRef = kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.ExternalArtifactKind, Name: art}
	k.Spec.Interval = metav1.Duration{Duration: time.Hour}
	return k
}

// externalArtifact reads an ExternalArtifact of e's namespace and checks it is Ready (kstatus
// Current, as kubectl wait and flux get read it), from generator gen, at revision.
func (e *env) externalArtifact(name, gen, revision string) *sourcev1.ExternalArtifact {
	e.t.Helper()
	ctx := context.Background()
	var ea sourcev1.ExternalArtifact
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: name}, &ea); err != nil {
		e.t.Fatalf("externalartifact %s: %v", name, err)
	}
	c := apimeta.FindStatusCondition(ea.Status.Conditions, meta.ReadyCondition)
	if c == nil || c.Status != metav1.ConditionTrue {
		e.t.Fatalf("externalartifact %s: Ready %+v", name, c)
	}
	ref := ea.Spec.SourceRef
	if ref == nil || ref.Kind != swv1beta1.ArtifactGeneratorKind || ref.Name != gen || ref.APIVersion != swv1beta1.GroupVersion.String() {
		e.t.Fatalf("externalartifact %s: sourceRef %+v", name, ref)
	}
	if o := metav1.GetControllerOf(&ea); o == nil || o.Kind != swv1beta1.ArtifactGeneratorKind || o.Name != gen {
		e.t.Fatalf("externalartifact %s: controller %+v", name, o)
	}
	a := ea.Status.Artifact
	if a == nil || a.Revision != revision || !strings.HasPrefix(a.Digest, "sha256:") || !strings.HasPrefix(a.URL, reconcile.ArtifactURLScheme) ||
		a.Path == "" || a.LastUpdateTime.IsZero() || a.Metadata[swv1beta1.ArtifactOriginRevisionAnnotation] != revision {
		e.t.Fatalf("externalartifact %s: artifact %+v, want revision %s", name, a, revision)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(sourcev1.GroupVersion.WithKind(sourcev1.ExternalArtifactKind))
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: name}, u); err != nil {
		e.t.Fatal(err)
	}
	if res, err := kstatus.Compute(u); err != nil || res.Status != kstatus.CurrentStatus {
		e.t.Fatalf("externalartifact %s: kstatus %v %v", name, res, err)
	}
	return &ea
}

// An ArtifactGenerator composes ExternalArtifacts from the carried Git item; Kustomizations on
// them build the composed folders (apps/production's overlay reaching apps/base beside it)
// and are Ready at the Git revision; a new commit reaches them on the next pass, due by their
// new revision. A generator naming a GitRepository the bundle does not carry is not Ready with
// SourceNotCarried, and so is the Kustomization reading its artifact.
func TestArtifactGeneratorFromBundle(t *testing.T) {
	ctx := context.Background()
	const repo = "agen"
	ns := "ks-" + repo
	files := map[string]string{
		"infrastructure/controllers/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"infrastructure/controllers/cm.yaml":            configMapYAML(ns, "agen-infra", "one"),
		"apps/base/kustomization.yaml":                  kustomizationYAML("cm.yaml"),
		"apps/base/cm.yaml":                             configMapYAML(ns, "agen-app", "base"),
		"apps/production/kustomization.yaml":            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: prod-\nresources:\n  - ../base\n",
		"apps/production/README.md":                     "not copied",
		"clusters/production/other.yaml":                configMapYAML(ns, "agen-not-composed", "x"),
	}
	e, commit := newEnv(t, repo, files)
	e.importBundle()
	gen := generator(e.ns, "flux-system", "platform")
	if err := e.c.Create(ctx, gen); err != nil {
		t.Fatal(err)
	}
	e.create(e.onArtifact("infra-controllers", "flux-system-infrastructure", "./controllers"), e.onArtifact("apps", "flux-system-apps", "./production"))
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}

	var g swv1beta1.ArtifactGenerator
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "flux-system"}, &g); err != nil {
		t.Fatal(err)
	}
	c := apimeta.FindStatusCondition(g.Status.Conditions, meta.ReadyCondition)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != g.Generation {
		t.Fatalf("artifactgenerator: Ready %+v", c)
	}
	if len(g.Status.Inventory) != 2 || g.Status.Inventory[0].Name != "flux-system-infrastructure" || g.Status.Inventory[1].Name != "flux-system-apps" ||
		!strings.HasPrefix(g.Status.Inventory[0].Digest, "sha256:") || g.Status.ObservedSourcesDigest == "" {
		t.Fatalf("artifactgenerator: inventory %+v, sources digest %q", g.Status.Inventory, g.Status.ObservedSourcesDigest)
	}
	infra := e.externalArtifact("flux-system-infrastructure", "flux-system", rev(commit))
	apps := e.externalArtifact("flux-system-apps", "flux-system", rev(commit))
	if infra.Status.Artifact.Digest == apps.Status.Artifact.Digest {
		t.Fatal("both artifacts have the same digest")
	}
	e.expectReady("infra-controllers", commit)
	e.expectReady("apps", commit)
	if _, ok := e.configMap(e.ns, "agen-infra"); !ok {
		t.Fatal("infrastructure/controllers not applied")
	}
	if cm, ok := e.configMap(e.ns, "prod-agen-app"); !ok || cm.Data["value"] != "base" {
		t.Fatalf("apps/production (with apps/base) not applied: %v %+v", ok, cm.Data)
	}
	if _, ok := e.configMap(e.ns, "agen-not-composed"); ok {
		t.Fatal("a file outside the copied folders was applied")
	}

	// A new commit of the origin: the generator and the Kustomization on its apps artifact are
	// due by the new revision, with no forcing.
	next := e.commit(map[string]string{"apps/base/cm.yaml": configMapYAML(ns, "agen-app", "moved")})
	e.importBundle()
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.externalArtifact("flux-system-apps", "flux-system", rev(next))
	e.expectReady("apps", next)
	if cm, _ := e.configMap(e.ns, "prod-agen-app"); cm.Data["value"] != "moved" {
		t.Fatalf("the new commit did not reach prod-agen-app: %+v", cm.Data)
	}

	// A generator whose source the bundle does not carry, and a Kustomization on its artifact.
	e.createSource("uncarried", "https://git.example.com/elsewhere.git")
	if err := e.c.Create(ctx, generator(e.ns, "other", "uncarried")); err != nil {
		t.Fatal(err)
	}
	e.create(e.onArtifact("other-apps", "other-apps", "./production"))
	if err := e.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with a generator whose source the bundle does not carry")
	}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "other"}, &g); err != nil {
		t.Fatal(err)
	}
	c = apimeta.FindStatusCondition(g.Status.Conditions, meta.ReadyCondition)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != api.SourceNotCarriedReason ||
		!strings.Contains(c.Message, "https://git.example.com/elsewhere.git") || !strings.Contains(c.Message, "alias monorepo") {
		t.Fatalf("artifactgenerator other: Ready %+v", c)
	}
	e.expectNotReady("other-apps", api.SourceNotCarriedReason, "ExternalArtifact", "other-apps", "elsewhere.git")
	// The generator that resolves stayed Ready.
	e.expectReady("apps", next)
}

// A Kustomization on an ExternalArtifact no generator declares is not Ready, saying so.
func TestExternalArtifactWithoutGenerator(t *testing.T) {
	ctx := context.Background()
	e, _ := newEnv(t, "agennone", map[string]string{"app/cm.yaml": configMapYAML("", "agennone", "x")})
	e.importBundle()
	e.create(e.onArtifact("orphan", "nobody", "./app"))
	if err := e.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded with an ExternalArtifact no generator declares")
	}
	e.expectNotReady("orphan", meta.ArtifactFailedReason, "ExternalArtifact", "no ArtifactGenerator", "nobody")
}

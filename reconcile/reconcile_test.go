package reconcile_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// chainFiles is a repository with three folders: a/ makes namespace ns and ConfigMap a in it,
// b/ and c/ put ConfigMaps into that namespace, so b and c can only apply after a.
func chainFiles(ns string) map[string]string {
	return map[string]string{
		"a/kustomization.yaml": kustomizationYAML("namespace.yaml", "cm.yaml"),
		"a/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"a/cm.yaml":            configMapYAML(ns, "a", "one"),
		"b/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"b/cm.yaml":            configMapYAML(ns, "b", "one"),
		"c/kustomization.yaml": kustomizationYAML("c1.yaml", "c2.yaml"),
		"c/c1.yaml":            configMapYAML(ns, "c1", "one"),
		"c/c2.yaml":            configMapYAML(ns, "c2", "one"),
	}
}

func resourceVersion(t *testing.T, cm corev1.ConfigMap) int64 {
	t.Helper()
	v, err := strconv.ParseInt(cm.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("ConfigMap %s: resourceVersion %q: %v", cm.Name, cm.ResourceVersion, err)
	}
	return v
}

// ka <- kb <- kc (kb depends on ka, kc on kb), created in reverse, apply in dependency order
// in one ReconcileAll, and each records its revision and inventory.
func TestDependsOnOrdersApplies(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "chain", chainFiles("chain-app"))
	e.importBundle()
	e.create(e.kustomization("kc", "c", true, "kb"), e.kustomization("kb", "./b", true, "ka"), e.kustomization("ka", "a", true))

	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{e.ns + "/ka", e.ns + "/kb", e.ns + "/kc"}
	if got := e.applied(); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	ka := e.expectReady("ka", commit)
	e.expectReady("kb", commit)
	kc := e.expectReady("kc", commit)
	var rv []int64
	for _, name := range []string{"a", "b", "c1"} {
		cm, ok := e.configMap("chain-app", name)
		if !ok {
			t.Fatalf("ConfigMap chain-app/%s was not applied", name)
		}
		if cm.Labels["kustomize.toolkit.fluxcd.io/name"] == "" || cm.Labels["kustomize.toolkit.fluxcd.io/namespace"] != e.ns {
			t.Fatalf("ConfigMap %s lacks the owner labels: %v", name, cm.Labels)
		}
		rv = append(rv, resourceVersion(t, cm))
	}
	if !(rv[0] < rv[1] && rv[1] < rv[2]) {
		t.Fatalf("resourceVersions a, b, c1 = %v, want increasing", rv)
	}
	gotInv := func(k *kustomizev1.Kustomization) []kustomizev1.ResourceRef { return k.Status.Inventory.Entries }
	if want := []kustomizev1.ResourceRef{{ID: "_chain-app__Namespace", Version: "v1"}, {ID: "chain-app_a__ConfigMap", Version: "v1"}}; !slices.Equal(gotInv(ka), want) {
		t.Fatalf("ka inventory %v, want %v", gotInv(ka), want)
	}
	if want := []kustomizev1.ResourceRef{{ID: "chain-app_c1__ConfigMap", Version: "v1"}, {ID: "chain-app_c2__ConfigMap", Version: "v1"}}; !slices.Equal(gotInv(kc), want) {
		t.Fatalf("kc inventory %v, want %v", gotInv(kc), want)
	}

	// A second pass changes nothing: same objects, same resourceVersions.
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	cm, _ := e.configMap("chain-app", "a")
	if resourceVersion(t, cm) != rv[0] {
		t.Fatalf("an unchanged re-apply rewrote ConfigMap a: resourceVersion %s, was %d", cm.ResourceVersion, rv[0])
	}
}

// kx and ky depend on each other: both report the cycle; kz, depending on kx, waits.
func TestDependencyCycle(t *testing.T) {
	ctx := context.Background()
	e, _ := newEnv(t, "cycle", map[string]string{"x/cm.yaml": configMapYAML("default", "cycle-x", "one")})
	e.importBundle()
	e.create(e.kustomization("kx", "x", true, "ky"), e.kustomization("ky", "x", true, "kx"), e.kustomization("kz", "x", true, "kx"))

	err := e.r.ReconcileAll(ctx)
	if err == nil {
		t.Fatal("ReconcileAll succeeded with a dependency cycle")
	}
	for _, name := range []string{"kx", "ky", "kz"} {
		if !strings.Contains(err.Error(), e.ns+"/"+name) {
			t.Fatalf("error does not name %s: %v", name, err)
		}
	}
	cycle := e.ns + "/kx -> " + e.ns + "/ky -> " + e.ns + "/kx"
	e.expectNotReady("kx", api.DependencyCycleReason, cycle)
	e.expectNotReady("ky", api.DependencyCycleReason, cycle)
	e.expectNotReady("kz", meta.DependencyNotReadyReason, e.ns+"/kx")
	// A cycle is terminal (Stalled); a dependency not ready is retried (Reconciling).
	e.expectKstatus("kx", kstatus.FailedStatus)
	e.expectKstatus("kz", kstatus.InProgressStatus)
	if _, ok := e.configMap("default", "cycle-x"); ok {
		t.Fatal("a member of a cycle applied its objects")
	}
}

// An object removed from Git is deleted after the next bundle when prune is on, and left in
// place when it is off.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	e, c1 := newEnv(t, "prune", map[string]string{
		"on/kustomization.yaml":  kustomizationYAML("keep.yaml", "gone.yaml"),
		"on/keep.yaml":           configMapYAML("default", "prune-on-keep", "one"),
		"on/gone.yaml":           configMapYAML("default", "prune-on-gone", "one"),
		"off/kustomization.yaml": kustomizationYAML("keep.yaml", "gone.yaml"),
		"off/keep.yaml":          configMapYAML("default", "prune-off-keep", "one"),
		"off/gone.yaml":          configMapYAML("default", "prune-off-gone", "one"),
	})
	e.importBundle()
	e.create(e.kustomization("on", "on", true), e.kustomization("off", "off", false))
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("on", c1)
	e.expectReady("off", c1)

	c2 := e.commit(map[string]string{
		"on/kustomization.yaml": kustomizationYAML("keep.yaml"), "on/gone.yaml": "",
		"off/kustomization.yaml": kustomizationYAML("keep.yaml"), "off/gone.yaml": "",
	})
	e.importBundle()
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kustomization string
		name          string
		exists        bool
	}{
		{"on", "prune-on-keep", true},
		{"on", "prune-on-gone", false},
		{"off", "prune-off-keep", true},
		{"off", "prune-off-gone", true},
	} {
		if _, ok := e.configMap("default", tc.name); ok != tc.exists {
			t.Errorf("%s: ConfigMap %s exists = %v, want %v", tc.kustomization, tc.name, ok, tc.exists)
		}
		k := e.expectReady(tc.kustomization, c2)
		if len(k.Status.Inventory.Entries) != 1 {
			t.Errorf("%s: inventory %v, want only the kept ConfigMap", tc.kustomization, k.Status.Inventory.Entries)
		}
	}
}

// A ConfigMap edited or deleted by hand is restored by the next forced pass.
func TestDriftIsCorrected(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "drift", map[string]string{
		"app/cm.yaml":    configMapYAML("default", "drift-edited", "desired"),
		"app/other.yaml": configMapYAML("default", "drift-deleted", "desired"),
	})
	e.importBundle()
	e.create(e.kustomization("app", "app", true))
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("app", commit)

	cm, _ := e.configMap("default", "drift-edited")
	patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"value":"by-hand","extra":"x"}}`))
	if err := e.c.Patch(ctx, &cm, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	if cm, _ = e.configMap("default", "drift-edited"); cm.Data["value"] != "by-hand" {
		t.Fatalf("the hand edit did not land: %v", cm.Data)
	}
	del, _ := e.configMap("default", "drift-deleted")
	if err := e.c.Delete(ctx, &del); err != nil {
		t.Fatal(err)
	}

	// Within the interval ReconcileAll would leave the Kustomization alone (see
	// TestPassesAreIntervalAware); a forced pass re-applies it.
	if err := e.r.ReconcileAllForce(ctx); err != nil {
		t.Fatal(err)
	}
	if cm, _ = e.configMap("default", "drift-edited"); cm.Data["value"] != "desired" {
		t.Fatalf("drift not corrected: data %v", cm.Data)
	}
	if _, ok := e.configMap("default", "drift-deleted"); !ok {
		t.Fatal("a ConfigMap deleted by hand was not re-created")
	}
	e.expectReady("app", commit)
}

// Remote bases fail the build with BuildFailed and say why; a Kustomization depending on one
// waits; a missing item is SourceNotFound.
func TestBuildFailures(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "failures", map[string]string{
		"https/kustomization.yaml":  kustomizationYAML("https://github.com/org/repo//x"),
		"short/kustomization.yaml":  kustomizationYAML("github.com/org/repo/x?ref=v1.0.0"),
		"scp/kustomization.yaml":    kustomizationYAML("git@github.com:org/repo.git"),
		"deep/kustomization.yaml":   kustomizationYAML("../https"),
		"patch/kustomization.yaml":  "resources:\n  - cm.yaml\npatches:\n  - path: https://example.com/patch.yaml\n",
		"patch/cm.yaml":             configMapYAML("default", "failures-cm", "one"),
		"broken/kustomization.yaml": kustomizationYAML("missing.yaml"),
		"ok/cm.yaml":                configMapYAML("default", "failures-ok", "one"),
	})
	e.importBundle()
	for _, path := range []string{"https", "short", "scp", "deep", "patch", "broken"} {
		e.create(e.kustomization(path, path, true))
	}
	e.create(e.kustomization("dependent", "ok", true, "https"))
	missing := e.kustomization("missing", "ok", true)
	missing.Spec.SourceRef.Name = "nowhere"
	e.create(missing)

	if err := e.r.ReconcileAll(ctx); err == nil {
		t.Fatal("ReconcileAll succeeded")
	}
	for _, tc := range []struct {
		name, reason string
		parts        []string
	}{
		{"https", meta.BuildFailedReason, []string{"remote bases are refused", "https://github.com/org/repo//x", commit}},
		{"short", meta.BuildFailedReason, []string{"remote bases are refused", "github.com/org/repo/x?ref=v1.0.0"}},
		{"scp", meta.BuildFailedReason, []string{"remote bases are refused", "git@github.com:org/repo.git"}},
		{"deep", meta.BuildFailedReason, []string{"remote bases are refused", "https/kustomization.yaml"}},
		{"patch", meta.BuildFailedReason, []string{"remote bases are refused", "https://example.com/patch.yaml"}},
		{"broken", meta.BuildFailedReason, []string{"missing.yaml"}},
		{"dependent", meta.DependencyNotReadyReason, []string{e.ns + "/https"}},
		{"missing", meta.ArtifactFailedReason, []string{"nowhere' not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.expectNotReady(tc.name, tc.reason, tc.parts...)
		})
	}
	e.t = t
	if _, ok := e.configMap("default", "failures-ok"); ok {
		t.Fatal("a Kustomization applied before its dependency was ready")
	}
}

// targetNamespace moves every namespaced object of the build; a folder without a
// kustomization.yaml is built from its manifests.
func TestTargetNamespace(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "target", map[string]string{
		"app/cm.yaml":        configMapYAML("", "target-cm", "one"),
		"app/sub/other.yaml": configMapYAML("elsewhere", "target-other", "one"),
	})
	e.importBundle()
	k := e.kustomization("app", "app", true)
	k.Spec.TargetNamespace = "default"
	e.create(k)
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("app", commit)
	for _, name := range []string{"target-cm", "target-other"} {
		if _, ok := e.configMap("default", name); !ok {
			t.Errorf("ConfigMap %s not in the target namespace", name)
		}
	}
}

// The CRD has the printer columns, every spec field survives a round trip through the API
// server (the schema prunes none), and Ready has exactly metav1.Condition's shape.
func TestCRDShape(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "shape", map[string]string{"app/cm.yaml": configMapYAML("default", "shape-cm", "one")})
	e.importBundle()

	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := e.c.Get(ctx, types.NamespacedName{Name: "kustomizations.kustomize.toolkit.fluxcd.io"}, crd); err != nil {
		t.Fatal(err)
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) != 1 {
		t.Fatalf("CRD versions: %v", versions)
	}
	cols, _, _ := unstructured.NestedSlice(versions[0].(map[string]any), "additionalPrinterColumns")
	want := [][2]string{
		{"Age", ".metadata.creationTimestamp"},
		{"Ready", `.status.conditions[?(@.type=="Ready")].status`},
		{"Status", `.status.conditions[?(@.type=="Ready")].message`},
	}
	if len(cols) != len(want) {
		t.Fatalf("printer columns %v, want %v", cols, want)
	}
	for i, c := range cols {
		m := c.(map[string]any)
		if m["name"] != want[i][0] || m["jsonPath"] != want[i][1] {
			t.Errorf("printer column %d = %v %v, want %v", i, m["name"], m["jsonPath"], want[i])
		}
	}

	full := e.kustomization("full", "app", true)
	full.Spec.DependsOn = []kustomizev1.DependencyReference{{Name: "ready", Namespace: e.ns}}
	full.Spec.TargetNamespace = "default"
	full.Spec.Timeout = &metav1.Duration{Duration: 90 * time.Second}
	full.Spec.Wait = true
	full.Spec.Suspend = true
	want2 := full.Spec.DeepCopy()
	e.create(full, e.kustomization("ready", "app", true))
	if got := e.get("full").Spec; got.Path != want2.Path || got.Interval != want2.Interval || !got.Prune ||
		!slices.Equal(got.DependsOn, want2.DependsOn) || got.TargetNamespace != "default" || got.Timeout == nil ||
		got.Timeout.Duration != 90*time.Second || !got.Wait || !got.Suspend || got.SourceRef != want2.SourceRef {
		t.Fatalf("spec after a round trip: %+v, want %+v", got, *want2)
	}

	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("ready", commit)
	if k := e.get("full"); len(k.Status.Conditions) != 0 {
		t.Fatalf("a suspended Kustomization was reconciled: %+v", k.Status)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kustomizev1.GroupVersion.WithKind(kustomizev1.KustomizationKind))
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "ready"}, u); err != nil {
		t.Fatal(err)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	if len(conds) != 1 {
		t.Fatalf("conditions %v, want only Ready", conds)
	}
	raw, err := json.Marshal(conds[0])
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var c metav1.Condition
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("Ready is not a metav1.Condition: %s: %v", raw, err)
	}
	keys := make([]string, 0)
	for k := range conds[0].(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"lastTransitionTime", "message", "observedGeneration", "reason", "status", "type"}; !slices.Equal(keys, want) {
		t.Fatalf("Ready has fields %v, want %v", keys, want)
	}
	if c.Type != "Ready" || c.Status != metav1.ConditionTrue || c.LastTransitionTime.IsZero() {
		t.Fatalf("Ready = %+v", c)
	}
}

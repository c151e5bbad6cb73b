package reconcile_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/reconcile"
)

// bundleObjectsEnv is e with its own reconciler, whose bundle-object inventory lives in
// namespace invNS, so tests do not share an inventory.
func bundleObjectsEnv(t *testing.T, e *env, invNS string) *reconcile.Reconciler {
	t.Helper()
	r, err := reconcile.New(cluster.Config, e.cacheDir, reconcile.Options{Namespace: invNS, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// importWithCluster imports the next bundle of e: the repository's main branch as Git item
// "platform" and, unless cluster is nil, the cluster item it makes in the bundle's layout.
// It returns the cluster item.
func importWithCluster(e *env, cluster func(l *bundle.Layout) bundle.Item) *bundle.Item {
	e.t.Helper()
	dir, l, b := e.nextBundle()
	var cl *bundle.Item
	if cluster != nil {
		it := cluster(l)
		cl = &it
		b.Items = append(b.Items, it)
	}
	e.signAndImport(dir, l, b)
	return cl
}

// clusterFiles makes a cluster item of files, as mirror pack does.
func clusterFiles(t *testing.T, files map[string]string) func(l *bundle.Layout) bundle.Item {
	return func(l *bundle.Layout) bundle.Item { return testbundle.ClusterItem(t, l, files) }
}

// cleanupKustomizations deletes the Kustomizations of namespaces when the test ends, taking
// their finalizers off so no later pass of another test finalizes them.
func cleanupKustomizations(t *testing.T, c client.Client, namespaces ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		for _, ns := range namespaces {
			var ks kustomizev1.KustomizationList
			if c.List(ctx, &ks, client.InNamespace(ns)) != nil {
				continue
			}
			for i := range ks.Items {
				k := &ks.Items[i]
				c.Delete(ctx, k)
				if len(k.Finalizers) > 0 {
					c.Patch(ctx, k, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
				}
			}
		}
	})
}

// inventory reads the bundle-object inventory ConfigMap of namespace ns.
func inventory(t *testing.T, c client.Client, ns string) (cm corev1.ConfigMap, ids []string) {
	t.Helper()
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: reconcile.BundleInventoryName}, &cm); err != nil {
		t.Fatalf("inventory configmap: %v", err)
	}
	if raw := cm.Data["inventory"]; raw != "" {
		var inv kustomizev1.ResourceInventory
		if err := json.Unmarshal([]byte(raw), &inv); err != nil {
			t.Fatalf("inventory %q: %v", raw, err)
		}
		for _, e := range inv.Entries {
			ids = append(ids, e.ID)
		}
	}
	return cm, ids
}

// gone reports whether obj no longer exists (or is being deleted: without a namespace
// controller, a deleted Namespace stays Terminating).
func gone(t *testing.T, c client.Client, key types.NamespacedName, obj client.Object) bool {
	t.Helper()
	err := c.Get(context.Background(), key, obj)
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return !obj.GetDeletionTimestamp().IsZero()
}

// Bundle 1 carries a Namespace and a Kustomization of the bundle's Git item: one pass applies
// both, the Kustomization is picked up in that same pass and ends Ready with its objects in the
// cluster. Later passes correct drift and write nothing when nothing changed. Bundle 2 drops
// the Kustomization: it is pruned. Bundle 3 carries no cluster item: everything the bundle
// applied is pruned, but never the inventory's own namespace.
func TestBundleObjectsApplyAndPrune(t *testing.T) {
	ctx := context.Background()
	const invNS, appNS = "ferry-bobj", "bobj-apps"
	e, commit := newEnv(t, "bobj", map[string]string{
		"apps/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"apps/cm.yaml":            configMapYAML(appNS, "greeting", "hello"),
	})
	r := bundleObjectsEnv(t, e, invNS)
	cleanupKustomizations(t, e.c, appNS)
	ks := "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: platform\n  namespace: " + appNS +
		"\nspec:\n  interval: 1m\n  path: apps\n  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: platform\n    namespace: " + e.ns + "\n"
	namespaces := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + appNS + "\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + invNS + "\n"
	item := importWithCluster(e, clusterFiles(t, map[string]string{"namespaces.yaml": namespaces, "apps/platform.yaml": ks}))

	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	var ns corev1.Namespace
	if err := e.c.Get(ctx, types.NamespacedName{Name: appNS}, &ns); err != nil {
		t.Fatalf("namespace %s was not applied: %v", appNS, err)
	}
	if ns.Labels["bundle.ferry.dev/name"] != reconcile.BundleInventoryName || ns.Labels["bundle.ferry.dev/namespace"] != invNS {
		t.Fatalf("namespace %s lacks the owner labels: %v", appNS, ns.Labels)
	}
	app := *e
	app.ns = appNS
	k := app.expectReady("platform", commit)
	if cm, ok := e.configMap(appNS, "greeting"); !ok || cm.Data["value"] != "hello" {
		t.Fatalf("the Kustomization's ConfigMap is not in the cluster: %v", cm.Data)
	}
	cm, ids := inventory(t, e.c, invNS)
	wantIDs := []string{"_" + appNS + "__Namespace", "_" + invNS + "__Namespace", appNS + "_platform_kustomize.toolkit.fluxcd.io_Kustomization"}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("inventory %v, want %v", ids, wantIDs)
	}
	if cm.Data["sequence"] != "1" || cm.Data["revision"] != item.Revision || cm.Data["item"] != bundle.ClusterItemName {
		t.Fatalf("inventory data %v, want sequence 1, revision %s", cm.Data, item.Revision)
	}
	inv := *e
	inv.ns = invNS
	if ev := inv.waitEvent("ConfigMap", reconcile.BundleInventoryName, meta.ReconciliationSucceededReason); ev.Type != corev1.EventTypeNormal || !strings.HasPrefix(ev.Note, "Applied bundle 1 item cluster revision "+item.Revision+": ") {
		t.Fatalf("success Event: %s %q", ev.Type, ev.Note)
	}

	// Unchanged: the next pass writes nothing (the inventory keeps its resourceVersion).
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := inventory(t, e.c, invNS); again.ResourceVersion != cm.ResourceVersion {
		t.Fatalf("an unchanged pass rewrote the inventory: resourceVersion %s, was %s", again.ResourceVersion, cm.ResourceVersion)
	}
	// Drift: someone else changes the Kustomization's interval; the next pass puts it back.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"interval":"7m"}}`))
	if err := e.c.Patch(ctx, k, patch, client.FieldOwner("someone")); err != nil {
		t.Fatal(err)
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if k := app.get("platform"); k.Spec.Interval.Duration != time.Minute {
		t.Fatalf("drift not corrected: interval %s", k.Spec.Interval.Duration)
	}

	// Bundle 2 drops the Kustomization and the inventory's namespace.
	item = importWithCluster(e, clusterFiles(t, map[string]string{"namespaces.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + appNS + "\n"}))
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for pass := 0; !gone(t, e.c, types.NamespacedName{Namespace: appNS, Name: "platform"}, &kustomizev1.Kustomization{}); pass++ {
		if pass == 3 {
			t.Fatal("the Kustomization the bundle no longer carries was not pruned")
		}
		if err := r.ReconcileAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if gone(t, e.c, types.NamespacedName{Name: invNS}, &corev1.Namespace{}) {
		t.Fatal("the inventory's namespace was pruned")
	}
	if gone(t, e.c, types.NamespacedName{Name: appNS}, &corev1.Namespace{}) {
		t.Fatal("a namespace bundle 2 still carries was deleted")
	}
	cm, ids = inventory(t, e.c, invNS)
	if want := []string{"_" + appNS + "__Namespace"}; !slices.Equal(ids, want) || cm.Data["sequence"] != "2" || cm.Data["revision"] != item.Revision {
		t.Fatalf("inventory %v %v, want %v at sequence 2", ids, cm.Data, want)
	}

	// Bundle 3 carries no cluster item: what the bundle applied is pruned.
	importWithCluster(e, nil)
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if !gone(t, e.c, types.NamespacedName{Name: appNS}, &corev1.Namespace{}) {
		t.Fatal("a namespace no bundle carries any more was not pruned")
	}
	cm, ids = inventory(t, e.c, invNS)
	if _, ok := cm.Data["revision"]; len(ids) != 0 || ok || cm.Data["sequence"] != "3" {
		t.Fatalf("inventory %v %v, want empty at sequence 3", ids, cm.Data)
	}
}

// A cluster item with one object the API server refuses fails the pass before any
// Kustomization is reconciled, names the item, the file, the document and the object, and
// applies nothing of the item; so does a layer that does not decode. A fixed bundle then
// applies.
func TestBundleObjectsRefusedAppliesNothing(t *testing.T) {
	ctx := context.Background()
	const invNS, newNS = "ferry-bref", "bref-new"
	e, commit := newEnv(t, "bref", map[string]string{"x/cm.yaml": configMapYAML("", "bref-x", "one")})
	r := bundleObjectsEnv(t, e, invNS)
	cleanupKustomizations(t, e.c, newNS)
	existing := e.kustomization("existing", "x", true)
	existing.Spec.TargetNamespace = e.ns
	e.create(existing)
	good := map[string]string{
		"a/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + newNS + "\n",
		"a/ok.yaml":        configMapYAML(newNS, "ok", "one"),
		"b/ks.yaml": "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: from-bundle\n  namespace: " + newNS +
			"\nspec:\n  interval: 1m\n  path: x\n  prune: false\n  targetNamespace: " + newNS + "\n  sourceRef:\n    kind: GitRepository\n    name: platform\n    namespace: " + e.ns + "\n",
	}
	withBad := map[string]string{"c/bad.yaml": configMapYAML(e.ns, "ok-too", "one") + "---\n" + configMapYAML(e.ns, "Not_Valid", "one")}
	for k, v := range good {
		withBad[k] = v
	}
	notReconciled := func() {
		t.Helper()
		if err := e.c.Get(ctx, types.NamespacedName{Name: newNS}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Fatalf("namespace %s of the refused item was applied (%v)", newNS, err)
		}
		for _, name := range []string{"ok-too", "Not_Valid"} {
			if _, ok := e.configMap(e.ns, name); ok {
				t.Fatalf("ConfigMap %s of the refused item was applied", name)
			}
		}
		if k := e.get("existing"); apimeta.FindStatusCondition(k.Status.Conditions, meta.ReadyCondition) != nil {
			t.Fatalf("a Kustomization was reconciled after the bundle objects failed: %+v", k.Status)
		}
	}

	// (a) The API server refuses one object: the dry-run gate stops everything.
	importWithCluster(e, clusterFiles(t, withBad))
	err := r.ReconcileAll(ctx)
	if err == nil {
		t.Fatal("ReconcileAll succeeded with an object the API server refuses")
	}
	for _, want := range []string{"bundle 1 item cluster: ReconciliationFailed", "nothing applied", "dry-run refused c/bad.yaml document 2 (ConfigMap " + e.ns + "/Not_Valid): invalid"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error does not say %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "ok-too") {
		t.Fatalf("error names an object that was not refused: %v", err)
	}
	notReconciled()
	inv := *e
	inv.ns = invNS
	if ev := inv.waitEvent("ConfigMap", reconcile.BundleInventoryName, meta.ReconciliationFailedReason); ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Note, "Not_Valid") {
		t.Fatalf("failure Event: %s %q", ev.Type, ev.Note)
	}
	if cm, ids := inventory(t, e.c, invNS); len(ids) != 0 || cm.Data["sequence"] != "" {
		t.Fatalf("a refused item was recorded: %v", cm.Data)
	}

	// (b) A layer that does not decode (written by something other than mirror pack).
	importWithCluster(e, func(l *bundle.Layout) bundle.Item {
		return testbundle.ClusterItemOfLayer(t, l, []byte("# Source: a/namespace.yaml\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+newNS+"\n---\n# Source: b/broken.yaml\nkind: ConfigMap\napiVersion: v1\n"))
	})
	err = r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "bundle 2 item cluster: BuildFailed") || !strings.Contains(err.Error(), "b/broken.yaml document 1: not in the canonical encoding") {
		t.Fatalf("error %v, want one naming b/broken.yaml document 1", err)
	}
	notReconciled()

	// (c) Fixed: the objects apply and the pass goes on to the Kustomizations, including the
	// one the bundle just applied.
	item := importWithCluster(e, clusterFiles(t, good))
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("existing", commit)
	fresh := *e
	fresh.ns = newNS
	fresh.expectReady("from-bundle", commit)
	if _, ok := e.configMap(newNS, "bref-x"); !ok {
		t.Fatal("the bundle's Kustomization did not apply its objects")
	}
	if cm, ids := inventory(t, e.c, invNS); len(ids) != 3 || cm.Data["sequence"] != "3" || cm.Data["revision"] != item.Revision {
		t.Fatalf("inventory %v %v", ids, cm.Data)
	}
}

// A namespaced object without a namespace is refused by name before anything is applied; a
// cluster-scoped one that names a namespace is applied without it, as kubectl does.
func TestBundleObjectsScopes(t *testing.T) {
	ctx := context.Background()
	const invNS = "ferry-bscope"
	e, _ := newEnv(t, "bscope", map[string]string{"x/cm.yaml": configMapYAML("", "bscope-x", "one")})
	r := bundleObjectsEnv(t, e, invNS)
	importWithCluster(e, clusterFiles(t, map[string]string{
		"ns.yaml":  "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bscope-a\n  namespace: somewhere\n",
		"cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nowhere\n",
		"inv.yaml": configMapYAML(invNS, reconcile.BundleInventoryName, "mine"),
	}))
	err := r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "cm.yaml document 1 (ConfigMap nowhere): namespaced, but metadata.namespace is not set") {
		t.Fatalf("error %v, want one naming cm.yaml document 1", err)
	}
	if !strings.Contains(err.Error(), "inv.yaml document 1 (ConfigMap "+invNS+"/"+reconcile.BundleInventoryName+"): is the bundle-object inventory") {
		t.Fatalf("error %v, want one refusing the inventory ConfigMap", err)
	}
	if err := e.c.Get(ctx, types.NamespacedName{Name: "bscope-a"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace bscope-a was applied although the item was refused (%v)", err)
	}
	importWithCluster(e, clusterFiles(t, map[string]string{
		"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bscope-a\n  namespace: somewhere\n",
	}))
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ids := inventory(t, e.c, invNS); !slices.Equal(ids, []string{"_bscope-a__Namespace"}) {
		t.Fatalf("inventory %v", ids)
	}
	var ns corev1.Namespace
	if err := e.c.Get(ctx, types.NamespacedName{Name: "bscope-a"}, &ns); err != nil || ns.Labels["bundle.ferry.dev/namespace"] != invNS {
		t.Fatalf("namespace bscope-a: %v %v", err, ns.Labels)
	}
}

// A reconciler that may not read ConfigMaps goes on with Kustomizations when the bundle carries
// no cluster item, and fails naming the inventory when it does.
func TestBundleObjectsForbiddenInventory(t *testing.T) {
	ctx := context.Background()
	e, _ := newEnv(t, "bforbid", map[string]string{"x/cm.yaml": configMapYAML("", "bforbid-x", "one")})
	removeAll(e.c, e.ns) // the env's GitRepository: the reader could not put a finalizer on it
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "reader"}},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "bforbid-reader"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"kustomize.toolkit.fluxcd.io"}, Resources: []string{"kustomizations"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"helm.toolkit.fluxcd.io"}, Resources: []string{"helmreleases"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"source.toolkit.fluxcd.io"}, Resources: []string{"gitrepositories", "ocirepositories", "helmrepositories", "helmcharts", "externalartifacts"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"source.extensions.fluxcd.io"}, Resources: []string{"artifactgenerators"}, Verbs: []string{"get", "list", "watch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "bforbid-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "bforbid-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: e.ns, Name: "reader"}},
		},
	}
	for _, o := range objs {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		e.c.Delete(context.Background(), objs[2])
		e.c.Delete(context.Background(), objs[1])
	})
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + e.ns + ":reader"}
	r, err := reconcile.New(cfg, e.cacheDir, reconcile.Options{Namespace: "ferry-bforbid"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)

	importWithCluster(e, nil)
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatalf("a bundle without a cluster item failed on the inventory: %v", err)
	}
	importWithCluster(e, clusterFiles(t, map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bforbid-a\n"}))
	err = r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "bundle 2 item cluster: ReconciliationFailed: inventory configmap ferry-bforbid/"+reconcile.BundleInventoryName) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("error %v, want one naming the inventory configmap, forbidden", err)
	}
}

package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/reconcile"
)

// results collects what a Reconciler reports through Options.OnResult.
type results struct {
	mu   sync.Mutex
	list []reconcile.Result
}

func (r *results) add(x reconcile.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, x)
}

// of returns the results about the kind object ns/name, in order.
func (r *results) of(kind, ns, name string) []reconcile.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []reconcile.Result
	for _, x := range r.list {
		if x.Kind == kind && x.Namespace == ns && x.Name == name {
			out = append(out, x)
		}
	}
	return out
}

// reporting returns a Reconciler over e's cache that reports to a new results.
func (e *env) reporting() (*reconcile.Reconciler, *results) {
	e.t.Helper()
	res := &results{}
	r, err := reconcile.New(cluster.Config, e.cacheDir, reconcile.Options{OnResult: res.add})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.Close)
	return r, res
}

// gone checks that the Kustomization or HelmRelease obj no longer exists.
func (e *env) gone(obj client.Object) {
	e.t.Helper()
	err := e.c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	if !apierrors.IsNotFound(err) {
		e.t.Fatalf("%s still exists (%v): finalizers %v, deletionTimestamp %v", obj.GetName(), err, obj.GetFinalizers(), obj.GetDeletionTimestamp())
	}
}

// hasFinalizer checks that a Kustomization of e's namespace carries Ferry's finalizer.
func (e *env) hasFinalizer(name string) {
	e.t.Helper()
	if k := e.get(name); !slices.Contains(k.Finalizers, api.Finalizer) {
		e.t.Fatalf("kustomization %s: finalizers %v, want %s", name, k.Finalizers, api.Finalizer)
	}
}

// A deleted Kustomization with prune deletes the objects of its inventory that still carry its
// owner labels, then its finalizer goes; without prune, or suspended, only the finalizer goes.
// A tenant Kustomization whose ServiceAccount may not delete keeps its finalizer (PruneFailed)
// until it may.
func TestKustomizationFinalizer(t *testing.T) {
	ctx := context.Background()
	e, commit := newEnv(t, "finalize", map[string]string{
		"on/kustomization.yaml":     kustomizationYAML("a.yaml", "b.yaml"),
		"on/a.yaml":                 configMapYAML("default", "fin-on-a", "one"),
		"on/b.yaml":                 configMapYAML("default", "fin-on-b", "one"),
		"off/cm.yaml":               configMapYAML("default", "fin-off", "one"),
		"susp/cm.yaml":              configMapYAML("default", "fin-susp", "one"),
		"tenant/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"tenant/cm.yaml":            configMapYAML("fin-tenant", "fin-tenant", "one"),
	})
	e.importBundle()
	r, res := e.reporting()

	// The tenant's ServiceAccount may do everything to ConfigMaps of fin-tenant but delete.
	tenantNS := "fin-tenant"
	verbs := []string{"get", "list", "watch", "create", "update", "patch"}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: verbs}},
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "deployer"}},
		role,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: "deployer"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmaps"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: tenantNS, Name: "deployer"}},
		},
	} {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tenant := e.kustomization("tenant", "tenant", true)
	tenant.Namespace = tenantNS
	tenant.Spec.ServiceAccountName = "deployer"
	t.Cleanup(func() { removeAll(e.c, tenantNS) })

	e.create(e.kustomization("on", "on", true), e.kustomization("off", "off", false), e.kustomization("susp", "susp", true), tenant)
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"on", "off", "susp"} {
		e.expectReady(name, commit)
		e.hasFinalizer(name)
	}
	var tk kustomizev1.Kustomization
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(tenant), &tk); err != nil || !slices.Contains(tk.Finalizers, api.Finalizer) {
		t.Fatalf("tenant kustomization: %v, finalizers %v", err, tk.Finalizers)
	}

	// fin-on-b loses the owner labels by hand: the Kustomization no longer claims it.
	b, _ := e.configMap("default", "fin-on-b")
	if err := e.c.Patch(ctx, &b, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":null}}`))); err != nil {
		t.Fatal(err)
	}
	susp := e.get("susp")
	susp.Spec.Suspend = true
	if err := e.c.Update(ctx, susp); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"on", "off", "susp"} {
		if err := e.c.Delete(ctx, e.get(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.c.Delete(ctx, &tk); err != nil {
		t.Fatal(err)
	}
	if k := e.get("on"); k.DeletionTimestamp.IsZero() {
		t.Fatal("the deleted Kustomization has no deletionTimestamp: no finalizer held it")
	}

	err := r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "kustomization "+tenantNS+"/tenant: "+meta.PruneFailedReason) {
		t.Fatalf("ReconcileAll = %v, want the tenant's PruneFailed", err)
	}
	for _, name := range []string{"on", "off", "susp"} {
		e.gone(&kustomizev1.Kustomization{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}})
	}
	for name, exists := range map[string]bool{"fin-on-a": false, "fin-on-b": true, "fin-off": true, "fin-susp": true} {
		if _, ok := e.configMap("default", name); ok != exists {
			t.Errorf("ConfigMap %s exists = %v, want %v", name, ok, exists)
		}
	}
	for name, note := range map[string]string{
		"on":   "deleted 1 of 2 objects of the inventory; finalizer removed",
		"off":  "prune is off: 1 objects of the inventory left in place; finalizer removed",
		"susp": "suspended: nothing deleted, 1 objects of the inventory left in place; finalizer removed",
	} {
		got := res.of(kustomizev1.KustomizationKind, e.ns, name)
		if len(got) != 2 || !got[1].Deleted || got[1].Reason != api.FinalizedReason || got[1].Message != note {
			t.Errorf("results of %s: %+v, want the second Deleted %s %q", name, got, api.FinalizedReason, note)
		}
		ev := e.waitEvent(kustomizev1.KustomizationKind, name, api.FinalizedReason)
		if ev.Type != corev1.EventTypeNormal || ev.Note != note || ev.Action != "Finalize" {
			t.Errorf("Event of %s: %s %s %q", name, ev.Type, ev.Action, ev.Note)
		}
	}

	// The tenant's ConfigMap could not be deleted: the Kustomization stays, not Ready.
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(tenant), &tk); err != nil {
		t.Fatalf("the tenant Kustomization is gone although its prune failed: %v", err)
	}
	tenantEnv := *e
	tenantEnv.ns = tenantNS
	tenantEnv.expectNotReady("tenant", meta.PruneFailedReason, "fin-tenant", "forbidden")
	tenantEnv.waitEvent(kustomizev1.KustomizationKind, "tenant", meta.PruneFailedReason)
	if _, ok := e.configMap(tenantNS, "fin-tenant"); !ok {
		t.Fatal("ConfigMap fin-tenant is gone")
	}

	// Once the ServiceAccount may delete, the next pass finishes.
	role.Rules[0].Verbs = append(verbs, "delete")
	if err := e.c.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.gone(&tk)
	if _, ok := e.configMap(tenantNS, "fin-tenant"); ok {
		t.Fatal("ConfigMap fin-tenant was not deleted with its Kustomization")
	}
}

package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// tenantEnv is e with its Kustomizations in namespace ns, which it creates together with
// ServiceAccount deployer and a Role that lets deployer manage ConfigMaps in ns only. The
// Kustomizations of ns are deleted when the test ends.
func tenantEnv(t *testing.T, e *env, ns string) *env {
	t.Helper()
	ctx := context.Background()
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"}},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "configmaps"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
			}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer-configmaps"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmaps"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "deployer"}},
		},
	}
	for _, o := range objs {
		if err := e.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		removeAll(e.c, ns)
	})
	tenant := *e
	tenant.ns = ns
	tenant.createSource("platform", gitServer.RepoURL(e.repo))
	return &tenant
}

// A tenant Kustomization applies as its ServiceAccount: a build reaching outside the
// tenant's namespace is refused by the dry-run gate before anything is written, a build
// inside it applies, and a later build that reaches out again leaves the cluster and the
// inventory as they were.
func TestServiceAccountImpersonation(t *testing.T) {
	ctx := context.Background()
	e, c1 := newEnv(t, "tenant", map[string]string{
		"escape/kustomization.yaml": kustomizationYAML("own.yaml", "other.yaml"),
		"escape/own.yaml":           configMapYAML("tenant-a", "tenant-own", "one"),
		"escape/other.yaml":         configMapYAML("other-ns", "tenant-other", "one"),
		"inside/kustomization.yaml": kustomizationYAML("cm.yaml"),
		"inside/cm.yaml":            configMapYAML("tenant-a", "tenant-inside", "one"),
	})
	e.importBundle()
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other-ns"}}); err != nil {
		t.Fatal(err)
	}
	tenant := tenantEnv(t, e, "tenant-a")
	escape := tenant.kustomization("escape", "escape", true)
	escape.Spec.ServiceAccountName = "deployer"
	inside := tenant.kustomization("inside", "inside", true)
	inside.Spec.ServiceAccountName = "deployer"
	tenant.create(escape, inside)

	// (a) The ConfigMap in other-ns is forbidden to deployer: nothing at all is applied.
	err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: "tenant-a", Name: "escape"})
	if err == nil || !strings.Contains(err.Error(), "kustomization tenant-a/escape: "+meta.ReconciliationFailedReason) {
		t.Fatalf("Reconcile escape: %v, want kustomization tenant-a/escape: ReconciliationFailed", err)
	}
	forbidden := "ConfigMap other-ns/tenant-other: forbidden: serviceaccount tenant-a/deployer cannot apply configmaps in namespace other-ns"
	tenant.expectNotReady("escape", meta.ReconciliationFailedReason, c1, "nothing applied", forbidden, `system:serviceaccount:tenant-a:deployer`)
	if _, c := tenant.ready("escape"); strings.Contains(c.Message, "tenant-own") {
		t.Fatalf("the permitted ConfigMap is named as refused: %q", c.Message)
	}
	for _, cm := range [][2]string{{"tenant-a", "tenant-own"}, {"other-ns", "tenant-other"}} {
		if _, ok := e.configMap(cm[0], cm[1]); ok {
			t.Errorf("ConfigMap %s/%s was written although the dry run failed", cm[0], cm[1])
		}
	}
	if k := tenant.get("escape"); k.Status.Inventory != nil || k.Status.LastAppliedRevision != "" {
		t.Fatalf("escape: inventory %v, lastAppliedRevision %q after a refused build, want none", k.Status.Inventory, k.Status.LastAppliedRevision)
	}

	// (b) A build inside tenant-a applies as deployer and is Ready.
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: "tenant-a", Name: "inside"}); err != nil {
		t.Fatal(err)
	}
	k := tenant.expectReady("inside", c1)
	cm, ok := e.configMap("tenant-a", "tenant-inside")
	if !ok {
		t.Fatal("ConfigMap tenant-a/tenant-inside was not applied")
	}
	if cm.Labels["kustomize.toolkit.fluxcd.io/name"] != "inside" || cm.Labels["kustomize.toolkit.fluxcd.io/namespace"] != "tenant-a" {
		t.Fatalf("ConfigMap tenant-inside lacks the owner labels: %v", cm.Labels)
	}
	wantInv := []kustomizev1.ResourceRef{{ID: "tenant-a_tenant-inside__ConfigMap", Version: "v1"}}
	if !slices.Equal(k.Status.Inventory.Entries, wantInv) {
		t.Fatalf("inside inventory %v, want %v", k.Status.Inventory.Entries, wantInv)
	}

	// The next build of inside adds a ConfigMap in tenant-a and one in other-ns: refused
	// whole, the new tenant-a ConfigMap is not written and the inventory stays.
	c2 := e.commit(map[string]string{
		"inside/kustomization.yaml": kustomizationYAML("cm.yaml", "new.yaml", "other.yaml"),
		"inside/new.yaml":           configMapYAML("tenant-a", "tenant-new", "one"),
		"inside/other.yaml":         configMapYAML("other-ns", "tenant-inside-other", "one"),
	})
	e.importBundle()
	if err := e.r.Reconcile(ctx, types.NamespacedName{Namespace: "tenant-a", Name: "inside"}); err == nil {
		t.Fatal("Reconcile inside succeeded with a ConfigMap in other-ns")
	}
	tenant.expectNotReady("inside", meta.ReconciliationFailedReason, c2, "ConfigMap other-ns/tenant-inside-other: forbidden")
	if _, ok := e.configMap("tenant-a", "tenant-new"); ok {
		t.Error("ConfigMap tenant-a/tenant-new was written although the dry run failed")
	}
	k = tenant.get("inside")
	if !slices.Equal(k.Status.Inventory.Entries, wantInv) || k.Status.LastAppliedRevision != rev(c1) {
		t.Fatalf("inside after a refused build: inventory %v, lastAppliedRevision %q; want %v, %s", k.Status.Inventory.Entries, k.Status.LastAppliedRevision, wantInv, c1)
	}
}

// (c) A Kustomization naming a ServiceAccount that does not exist applies nothing.
func TestServiceAccountNotFound(t *testing.T) {
	ctx := context.Background()
	e, _ := newEnv(t, "nosa", map[string]string{"app/cm.yaml": configMapYAML("default", "nosa-cm", "one")})
	e.importBundle()
	k := e.kustomization("app", "app", true)
	k.Spec.ServiceAccountName = "nobody"
	e.create(k)
	err := e.r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "kustomization "+e.ns+"/app: "+api.ServiceAccountNotFoundReason) {
		t.Fatalf("ReconcileAll: %v, want kustomization %s/app: ServiceAccountNotFound", err, e.ns)
	}
	e.expectNotReady("app", api.ServiceAccountNotFoundReason, "serviceaccount "+e.ns+"/nobody not found")
	if _, ok := e.configMap("default", "nosa-cm"); ok {
		t.Fatal("ConfigMap nosa-cm was applied without its ServiceAccount")
	}
}

// (d) spec.images sets a Deployment's image to a new name and a digest.
func TestImages(t *testing.T) {
	ctx := context.Background()
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: images-app
spec:
  selector:
    matchLabels: {app: images-app}
  template:
    metadata:
      labels: {app: images-app}
    spec:
      containers:
        - name: app
          image: registry.example/team/app:1.0
        - name: sidecar
          image: registry.example/team/sidecar:2.0
`
	e, commit := newEnv(t, "images", map[string]string{"app/deploy.yaml": deployment})
	e.importBundle()
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	k := e.kustomization("app", "app", true)
	k.Spec.TargetNamespace = e.ns
	k.Spec.Images = []kustomize.Image{{Name: "registry.example/team/app", NewName: "mirror.local/team/app", Digest: dgst}}
	e.create(k)
	if got := e.get("app").Spec.Images; !slices.Equal(got, k.Spec.Images) {
		t.Fatalf("images after a round trip: %v, want %v", got, k.Spec.Images)
	}
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectReady("app", commit)
	var d appsv1.Deployment
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: "images-app"}, &d); err != nil {
		t.Fatalf("Deployment %s/images-app: %v", e.ns, err)
	}
	var got []string
	for _, c := range d.Spec.Template.Spec.Containers {
		got = append(got, c.Image)
	}
	if want := []string{"mirror.local/team/app@" + dgst, "registry.example/team/sidecar:2.0"}; !slices.Equal(got, want) {
		t.Fatalf("container images %v, want %v", got, want)
	}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "images-app"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Deployment default/images-app: %v, want not found (targetNamespace)", err)
	}
}

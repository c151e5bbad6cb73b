package reconcile_test

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fluxDeployment is a Deployment as Flux's bootstrap labels its controllers.
func fluxDeployment(ns, name string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + name + "\n  namespace: " + ns +
		"\n  labels:\n    app.kubernetes.io/part-of: flux\n    app.kubernetes.io/component: " + name +
		"\nspec:\n  selector: {matchLabels: {app: " + name + "}}\n  template:\n    metadata: {labels: {app: " + name + "}}\n" +
		"    spec: {containers: [{name: manager, image: ghcr.io/fluxcd/" + name + ":v1}]}\n"
}

// Flux's own bootstrap folder (flux-system with gotk-components.yaml) is applied but for the
// Deployments of Flux's controllers, which sync replaces: they are left out, said in the Ready
// message, and kept out of the inventory; a Deployment that only shares a name is applied.
func TestFluxBootstrapSkipsControllers(t *testing.T) {
	ctx := context.Background()
	const ns = "boot-flux-system"
	e, commit := newEnv(t, "boot", map[string]string{
		"flux-system/kustomization.yaml": kustomizationYAML("gotk-components.yaml"),
		"flux-system/gotk-components.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n---\n" +
			fluxDeployment(ns, "source-controller") + "---\n" + fluxDeployment(ns, "kustomize-controller") + "---\n" +
			"apiVersion: v1\nkind: Service\nmetadata:\n  name: source-controller\n  namespace: " + ns +
			"\nspec:\n  ports: [{port: 80}]\n  selector: {app: source-controller}\n---\n" +
			"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: helm-controller\n  namespace: " + ns +
			"\nspec:\n  selector: {matchLabels: {app: mine}}\n  template:\n    metadata: {labels: {app: mine}}\n" +
			"    spec: {containers: [{name: app, image: registry.example/mine:v1}]}\n",
	})
	e.importBundle()
	e.create(e.kustomization("flux-system", "flux-system", true))
	t.Cleanup(func() { e.c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	if err := e.r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	k, c := e.ready("flux-system")
	want := "Applied revision: " + rev(commit) + "; 2 of Flux's controllers not applied, sync reconciles in their place: Deployment " + ns + "/kustomize-controller, Deployment " + ns + "/source-controller"
	if c.Message != want {
		t.Fatalf("Ready message %q, want %q", c.Message, want)
	}
	for _, name := range []string{"source-controller", "kustomize-controller"} {
		err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &appsv1.Deployment{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("Flux's %s Deployment was applied (%v)", name, err)
		}
	}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "helm-controller"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("a Deployment not labelled as Flux's was left out: %v", err)
	}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "source-controller"}, &corev1.Service{}); err != nil {
		t.Errorf("the rest of Flux's bootstrap was not applied: %v", err)
	}
	for _, entry := range k.Status.Inventory.Entries {
		if strings.Contains(entry.ID, "source-controller_apps") || strings.Contains(entry.ID, "kustomize-controller_apps") {
			t.Errorf("inventory holds a skipped controller: %s", entry.ID)
		}
	}
}

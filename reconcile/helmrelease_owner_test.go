package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
)

// A release belongs to the HelmRelease that made it (its storage Secrets carry the
// HelmRelease's name and namespace): another HelmRelease naming the same release, from
// another namespace, neither upgrades it nor, when deleted, uninstalls it.
func TestHelmReleaseOwnsItsRelease(t *testing.T) {
	ctx := context.Background()
	h, _ := newHelmEnv(t, "helm-owner", map[string]string{"x/cm.yaml": configMapYAML("default", "helm-owner-x", "one")})
	h.addChart("1.0.0", nil)
	h.importCharts("1.0.0")
	const other = "helm-owner-other"
	if err := h.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(h.c, other) })
	if err := h.c.Create(ctx, &sourcev1.HelmRepository{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "charts"},
		Spec: sourcev1.HelmRepositorySpec{URL: h.charts.URL, Interval: metav1.Duration{Duration: time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	first := h.helmRelease("app", `{"greeting":"first"}`)
	first.Spec.ReleaseName = "shared-app"
	h.createHR(first)
	if err := h.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: h.ns, Name: "app"}); err != nil {
		t.Fatal(err)
	}
	h.expectHR("app", true, "ReconciliationSucceeded", "1.0.0", []string{"1:1.0.0:deployed"})
	var list corev1.SecretList
	if err := h.c.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{"owner": "helm", "name": "shared-app"}); err != nil || len(list.Items) != 1 {
		t.Fatalf("release Secrets: %d (%v)", len(list.Items), err)
	}
	if s := list.Items[0]; s.Labels["helm.toolkit.fluxcd.io/name"] != "app" || s.Labels["helm.toolkit.fluxcd.io/namespace"] != h.ns {
		t.Fatalf("the release's Secret does not name its HelmRelease: %v", s.Labels)
	}

	second := h.helmRelease("app", `{"greeting":"second"}`)
	second.Namespace = other
	second.Spec.ReleaseName = "shared-app"
	if err := h.c.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	err := h.r.ReconcileHelmRelease(ctx, types.NamespacedName{Namespace: other, Name: "app"})
	if err == nil || !strings.Contains(err.Error(), api.ReleaseNotOwnedReason) || !strings.Contains(err.Error(), "belongs to HelmRelease "+h.ns+"/app") {
		t.Fatalf("the second HelmRelease: %v, want ReleaseNotOwned naming %s/app", err, h.ns)
	}
	cm, _ := h.configMap("default", "shared-app-cm")
	if cm.Data["greeting"] != "first" {
		t.Fatalf("the release was changed by the HelmRelease that does not own it: %v", cm.Data)
	}
	var got helmv2.HelmRelease
	if err := h.c.Get(ctx, client.ObjectKeyFromObject(second), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.History) != 0 {
		t.Fatalf("the second HelmRelease recorded the other's history: %+v", got.Status.History)
	}

	// Deleting the second leaves the first's release installed.
	if err := h.c.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	h.r.ReconcileAll(ctx)
	if err := h.c.Get(ctx, client.ObjectKeyFromObject(second), &got); err == nil {
		t.Fatalf("the second HelmRelease is still there: %+v", got.Status.Conditions)
	}
	if _, ok := h.configMap("default", "shared-app-cm"); !ok {
		t.Fatal("deleting the HelmRelease that does not own the release uninstalled it")
	}
	if n := len(h.releaseSecrets("default", "shared-app")); n != 1 {
		t.Fatalf("release Secrets after the deletion: %d", n)
	}
}

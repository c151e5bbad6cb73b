package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// substYAML is a ConfigMap whose name and values hold variables; extra goes under metadata.
func substYAML(ns, name, extra string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n" + extra +
		"data:\n" +
		"  greeting: ${GREETING}\n" +
		"  region: ${REGION}\n" +
		"  token: ${TOKEN}\n" +
		"  zone: ${ZONE:=zone-a}\n" +
		"  color: ${COLOR:=blue}\n" +
		"  missing: x${MISSING}y\n" +
		"  number: ${quote}${NUM:=7}${quote}\n"
}

// postBuild substitutes variables from substitute, from a ConfigMap and a Secret (an optional
// missing one is skipped), with defaults; substitute wins over substituteFrom; an unquoted
// variable becomes a number, and a number is kept a string with a quote variable (as in Flux);
// objects with substitution disabled by annotation or label are applied as built.
func TestPostBuildSubstitute(t *testing.T) {
	ctx := context.Background()
	ns := "ks-postbuild"
	e, commit := newEnv(t, "postbuild", map[string]string{
		"app/kustomization.yaml": kustomizationYAML("cm.yaml", "annotated.yaml", "labelled.yaml", "deploy.yaml"),
		"app/deploy.yaml":        strings.Replace(webDeployment(ns), "replicas: 1", "replicas: ${REPLICAS}", 1),
		"app/cm.yaml":            substYAML(ns, "subst-${SUFFIX}", ""),
		"app/annotated.yaml":     substYAML(ns, "annotated", "  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n"),
		"app/labelled.yaml":      substYAML(ns, "labelled", "  labels:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n"),
	})
	e.importBundle()
	if err := e.c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-vars", Namespace: e.ns},
		Data:       map[string]string{"REGION": "eu-1", "SUFFIX": "prod", "GREETING": "from-configmap"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-secrets", Namespace: e.ns},
		Data:       map[string][]byte{"TOKEN": []byte("s3cret")},
	}); err != nil {
		t.Fatal(err)
	}
	k := e.kustomization("app", "app", true)
	k.Spec.PostBuild = &kustomizev1.PostBuild{
		Substitute: map[string]string{"GREETING": "hello", "COLOR": "red", "REPLICAS": "3", "quote": `"`},
		SubstituteFrom: []kustomizev1.SubstituteReference{
			{Kind: "ConfigMap", Name: "cluster-vars"},
			{Kind: "Secret", Name: "cluster-secrets"},
			{Kind: "ConfigMap", Name: "absent", Optional: true},
		},
	}
	e.create(k)
	if got := e.get("app").Spec.PostBuild; got == nil || got.Substitute["COLOR"] != "red" || len(got.SubstituteFrom) != 3 || !got.SubstituteFrom[2].Optional {
		t.Fatalf("postBuild after a round trip: %+v", got)
	}

	if err := e.r.Reconcile(ctx, client.ObjectKeyFromObject(k)); err != nil {
		t.Fatal(err)
	}
	e.expectReady("app", commit)
	cm, ok := e.configMap(ns, "subst-prod")
	if !ok {
		t.Fatalf("ConfigMap %s/subst-prod (name substituted from the ConfigMap) was not applied", ns)
	}
	want := map[string]string{"greeting": "hello", "region": "eu-1", "token": "s3cret", "zone": "zone-a", "color": "red", "missing": "xy", "number": "7"}
	for key, v := range want {
		if cm.Data[key] != v {
			t.Errorf("ConfigMap %s/subst-prod: %s = %q, want %q (data %v)", ns, key, cm.Data[key], v, cm.Data)
		}
	}
	var dep appsv1.Deployment
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &dep); err != nil {
		t.Fatalf("Deployment %s/web: %v", ns, err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("Deployment %s/web: replicas %v, want 3 (an unquoted variable becomes a number)", ns, dep.Spec.Replicas)
	}
	for _, name := range []string{"annotated", "labelled"} {
		cm, ok := e.configMap(ns, name)
		if !ok {
			t.Fatalf("ConfigMap %s/%s was not applied", ns, name)
		}
		if cm.Data["greeting"] != "${GREETING}" || cm.Data["zone"] != "${ZONE:=zone-a}" || cm.Data["missing"] != "x${MISSING}y" || cm.Data["number"] != "${quote}${NUM:=7}${quote}" {
			t.Errorf("ConfigMap %s/%s has substitution disabled but was changed: %v", ns, name, cm.Data)
		}
	}

	// A substituteFrom object that is missing and not optional fails the reconciliation.
	bad := e.kustomization("bad", "app", true)
	bad.Spec.PostBuild = &kustomizev1.PostBuild{SubstituteFrom: []kustomizev1.SubstituteReference{{Kind: "ConfigMap", Name: "nowhere"}}}
	e.create(bad)
	if err := e.r.Reconcile(ctx, client.ObjectKeyFromObject(bad)); err == nil {
		t.Fatal("Reconcile succeeded with a missing substituteFrom ConfigMap")
	}
	e.expectNotReady("bad", meta.BuildFailedReason, "ConfigMap "+e.ns+"/nowhere", commit)
}

// webDeployment never becomes available here: there is no kubelet to run its pods.
func webDeployment(ns string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ` + ns + `
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web@sha256:0000000000000000000000000000000000000000000000000000000000000000
`
}

// A healthCheck on a Deployment that never becomes available fails within the timeout and names
// it; one on a ConfigMap passes. Each outcome is recorded as an Event on the Kustomization.
func TestHealthChecksAndEvents(t *testing.T) {
	ctx := context.Background()
	ns := "ks-health"
	e, commit := newEnv(t, "health", map[string]string{
		"web/deploy.yaml": webDeployment(ns),
		"cfg/cm.yaml":     configMapYAML(ns, "settings", "one"),
	})
	e.importBundle()
	web := e.kustomization("web", "web", true)
	web.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Second}
	web.Spec.HealthChecks = []meta.NamespacedObjectKindReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}}
	cfg := e.kustomization("cfg", "cfg", true)
	cfg.Spec.HealthChecks = []meta.NamespacedObjectKindReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "settings", Namespace: ns}}
	e.create(web, cfg)
	if got := e.get("web").Spec.HealthChecks; len(got) != 1 || got[0] != web.Spec.HealthChecks[0] {
		t.Fatalf("healthChecks after a round trip: %+v", got)
	}

	start := time.Now()
	err := e.r.ReconcileAll(ctx)
	if err == nil || !strings.Contains(err.Error(), "kustomization "+ns+"/web: "+meta.HealthCheckFailedReason) {
		t.Fatalf("ReconcileAll = %v, want web's health check failure", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the health check took %s with a 3s timeout", d)
	}
	e.expectNotReady("web", meta.HealthCheckFailedReason, "Deployment "+ns+"/web", commit)
	var dep appsv1.Deployment
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &dep); err != nil {
		t.Fatalf("the Deployment was not applied: %v", err)
	}
	e.expectReady("cfg", commit)

	success := e.waitEvent(kustomizev1.KustomizationKind, "cfg", meta.ReconciliationSucceededReason)
	if success.Type != corev1.EventTypeNormal || success.Note != "Applied revision: "+rev(commit)+": 1 created, 0 configured, 0 pruned" {
		t.Errorf("success Event: %s %q", success.Type, success.Note)
	}
	failure := e.waitEvent(kustomizev1.KustomizationKind, "web", meta.HealthCheckFailedReason)
	if failure.Type != corev1.EventTypeWarning || !strings.Contains(failure.Note, "Deployment "+ns+"/web") {
		t.Errorf("failure Event: %s %q", failure.Type, failure.Note)
	}
	for _, ev := range []eventsv1.Event{success, failure} {
		if ev.ReportingController != "ferry" || ev.Action != "Reconcile" || ev.Regarding.Kind != kustomizev1.KustomizationKind {
			t.Errorf("Event %s: reportingController %q action %q regarding %+v", ev.Name, ev.ReportingController, ev.Action, ev.Regarding)
		}
	}
}

// waitEvent waits up to 20 seconds for an Event of e's namespace regarding the kind object
// name with reason, and returns it.
func (e *env) waitEvent(kind, name, reason string) eventsv1.Event {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list eventsv1.EventList
		if err := e.c.List(context.Background(), &list, client.InNamespace(e.ns)); err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.Regarding.Kind == kind && ev.Regarding.Name == name && ev.Reason == reason {
				return ev
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no Event %s regarding %s %s/%s; events: %+v", reason, kind, e.ns, name, list.Items)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

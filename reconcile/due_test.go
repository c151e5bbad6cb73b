package reconcile_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// eventsAbout returns how many Events of e's namespace regard the Kustomization name,
// counting each series' repeats.
func (e *env) eventsAbout(name string) int {
	e.t.Helper()
	var list eventsv1.EventList
	if err := e.c.List(context.Background(), &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range list.Items {
		if ev.Regarding.Kind == kustomizev1.KustomizationKind && ev.Regarding.Name == name {
			n++
			if ev.Series != nil {
				n += int(ev.Series.Count)
			}
		}
	}
	return n
}

// ReconcileAll reconciles only what is due: a second pass within the interval leaves the
// Kustomizations alone (no result, no status write, no Event), so a hand edit stays until the
// interval has passed; the requestedAt annotation forces one (and its dependent, as a
// dependency reconciled in the pass), once; ReconcileAllForce and a new Reconciler reconcile
// everything.
func TestPassesAreIntervalAware(t *testing.T) {
	ctx := context.Background()
	const interval = 3 * time.Second
	e, commit := newEnv(t, "due", map[string]string{
		"app/cm.yaml": configMapYAML("default", "due-app", "desired"),
		"dep/cm.yaml": configMapYAML("default", "due-dep", "desired"),
	})
	e.importBundle()
	app := e.kustomization("app", "app", true)
	app.Spec.Interval = metav1.Duration{Duration: interval}
	dep := e.kustomization("dep", "dep", true, "app")
	dep.Spec.Interval = metav1.Duration{Duration: time.Hour}
	e.create(app, dep)
	r, res := e.reporting()
	count := func(name string) int { return len(res.of(kustomizev1.KustomizationKind, e.ns, name)) }

	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	e.expectReady("app", commit)
	e.expectReady("dep", commit)
	if count("app") != 1 || count("dep") != 1 {
		t.Fatalf("results after the first pass: app %d, dep %d; want 1 each", count("app"), count("dep"))
	}
	e.waitEvent(kustomizev1.KustomizationKind, "app", meta.ReconciliationSucceededReason)
	rv := e.get("app").ResourceVersion
	events := e.eventsAbout("app")

	// Within the interval: nothing is due, and a hand edit stays.
	cm, _ := e.configMap("default", "due-app")
	if err := e.c.Patch(ctx, &cm, client.RawPatch(types.MergePatchType, []byte(`{"data":{"value":"by-hand"}}`)), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(first) >= interval {
		t.Fatalf("the second pass came %s after the first, not within the %s interval: the machine is too slow for this test", time.Since(first), interval)
	}
	if count("app") != 1 || count("dep") != 1 {
		t.Fatalf("a pass within the interval reconciled: app %d, dep %d results", count("app"), count("dep"))
	}
	if got := e.get("app").ResourceVersion; got != rv {
		t.Fatalf("a pass within the interval wrote the Kustomization: resourceVersion %s, was %s", got, rv)
	}
	time.Sleep(500 * time.Millisecond) // let an Event on its way land
	if got := e.eventsAbout("app"); got != events {
		t.Fatalf("a pass within the interval recorded an Event: %d, was %d", got, events)
	}
	if cm, _ = e.configMap("default", "due-app"); cm.Data["value"] != "by-hand" {
		t.Fatalf("a pass within the interval re-applied: %v", cm.Data)
	}

	// After the interval, app is due again and the edit is undone; dep (interval 1h) is due
	// only because its dependency was reconciled in the pass.
	time.Sleep(time.Until(first.Add(interval)))
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if cm, _ = e.configMap("default", "due-app"); cm.Data["value"] != "desired" {
		t.Fatalf("the pass after the interval did not restore the edit: %v", cm.Data)
	}
	got := res.of(kustomizev1.KustomizationKind, e.ns, "app")
	if len(got) != 2 || got[1].DriftCorrected != 1 {
		t.Fatalf("results of app: %+v, want a second one with DriftCorrected 1", got)
	}
	if count("dep") != 2 {
		t.Fatalf("dep was not reconciled after its dependency: %d results", count("dep"))
	}

	// requestedAt forces app (and so dep) at once, and is recorded as handled.
	request := func(value string) {
		k := e.get("app")
		if k.Annotations == nil {
			k.Annotations = map[string]string{}
		}
		k.Annotations[meta.ReconcileRequestAnnotation] = value
		if err := e.c.Update(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	request(now)
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if count("app") != 3 || count("dep") != 3 {
		t.Fatalf("requestedAt: app %d, dep %d results; want 3 each", count("app"), count("dep"))
	}
	if k := e.get("app"); k.Status.LastHandledReconcileAt != now {
		t.Fatalf("lastHandledReconcileAt %q, want %q", k.Status.LastHandledReconcileAt, now)
	}
	if err := r.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if count("app") != 3 {
		t.Fatalf("a handled request was handled again: %d results", count("app"))
	}

	// Forced passes and new Reconcilers reconcile everything.
	if err := r.ReconcileAllForce(ctx); err != nil {
		t.Fatal(err)
	}
	if count("app") != 4 || count("dep") != 4 {
		t.Fatalf("ReconcileAllForce: app %d, dep %d results; want 4 each", count("app"), count("dep"))
	}
	fresh, res2 := e.reporting()
	if err := fresh.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(res2.of(kustomizev1.KustomizationKind, e.ns, "dep")); n != 1 {
		t.Fatalf("a new Reconciler's first pass reconciled dep %d times, want 1", n)
	}
	e.expectReady("app", commit)
}

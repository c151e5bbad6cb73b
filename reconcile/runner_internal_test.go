package reconcile

import (
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/api"
)

// TestSetConditions checks the conditions an outcome leaves, from each starting point, as Flux's
// controllers leave them: Ready=True alone on success; Ready=False with Reconciling
// (ProgressingWithRetry) on a failure that is retried; Ready=False with Stalled on a terminal one.
func TestSetConditions(t *testing.T) {
	ok := outcome{ready: true, reason: meta.ReconciliationSucceededReason, message: "Applied revision: abc"}
	retry := outcome{reason: meta.ArtifactFailedReason, message: "no item"}
	stalled := outcome{reason: api.DependencyCycleReason, message: "dependency cycle: ns/a -> ns/a"}.terminal()
	exhausted := outcome{reason: helmv2.InstallFailedReason, stalled: api.RetriesExceededReason, message: "retries exhausted"}
	type want struct {
		ready, readyReason   string
		reconciling, stalled string // reasons; "" for absent
	}
	for _, tc := range []struct {
		name  string
		start []outcome
		out   outcome
		want  want
	}{
		{"success", nil, ok, want{"True", meta.ReconciliationSucceededReason, "", ""}},
		{"retried failure", nil, retry, want{"False", meta.ArtifactFailedReason, meta.ProgressingWithRetryReason, ""}},
		{"terminal failure", nil, stalled, want{"False", api.DependencyCycleReason, "", api.DependencyCycleReason}},
		{"retries exhausted", nil, exhausted, want{"False", helmv2.InstallFailedReason, "", api.RetriesExceededReason}},
		{"success after stalled", []outcome{stalled}, ok, want{"True", meta.ReconciliationSucceededReason, "", ""}},
		{"retried after stalled", []outcome{stalled}, retry, want{"False", meta.ArtifactFailedReason, meta.ProgressingWithRetryReason, ""}},
		{"stalled after retried", []outcome{retry}, stalled, want{"False", api.DependencyCycleReason, "", api.DependencyCycleReason}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &kustomizev1.Kustomization{}
			k.Generation = 3
			for _, o := range tc.start {
				conditions.MarkReconciling(k, meta.ProgressingReason, "%s", progressMessage)
				setConditions(k, o)
			}
			conditions.MarkReconciling(k, meta.ProgressingReason, "%s", progressMessage)
			if !conditions.IsReconciling(k) || conditions.Has(k, meta.StalledCondition) {
				t.Fatalf("in progress: conditions %+v, want Reconciling and no Stalled", k.Status.Conditions)
			}
			setConditions(k, tc.out)
			r := conditions.Get(k, meta.ReadyCondition)
			if r == nil || string(r.Status) != tc.want.ready || r.Reason != tc.want.readyReason || r.Message != tc.out.message || r.ObservedGeneration != 3 {
				t.Fatalf("Ready %+v, want %s %s %q at generation 3", r, tc.want.ready, tc.want.readyReason, tc.out.message)
			}
			for _, c := range []struct{ typ, reason string }{{meta.ReconcilingCondition, tc.want.reconciling}, {meta.StalledCondition, tc.want.stalled}} {
				got := conditions.Get(k, c.typ)
				switch {
				case c.reason == "" && got != nil:
					t.Fatalf("%s %+v, want none", c.typ, got)
				case c.reason != "" && (got == nil || got.Status != metav1.ConditionTrue || got.Reason != c.reason):
					t.Fatalf("%s %+v, want True %s", c.typ, got, c.reason)
				}
			}
		})
	}
}

// TestTimeoutOf checks the timeout every kind gets: spec.timeout, else spec.interval, else the
// default.
func TestTimeoutOf(t *testing.T) {
	for _, tc := range []struct {
		timeout        *metav1.Duration
		interval, want time.Duration
	}{
		{&metav1.Duration{Duration: 7 * time.Second}, 9 * time.Second, 7 * time.Second},
		{&metav1.Duration{}, 9 * time.Second, 9 * time.Second},
		{nil, 9 * time.Second, 9 * time.Second},
		{nil, 0, defaultTimeout},
	} {
		if got := timeoutOf(tc.timeout, tc.interval); got != tc.want {
			t.Errorf("timeoutOf(%v, %s) = %s, want %s", tc.timeout, tc.interval, got, tc.want)
		}
	}
}

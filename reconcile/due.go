package reconcile

import (
	"context"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
)

// object returns the Kustomization or HelmRelease of the pass named key, or nil.
func (p *pass) object(key objKey) client.Object {
	switch key.Kind {
	case ferryv1.KustomizationKind:
		if k, ok := p.byKey[key.NamespacedName]; ok {
			return k
		}
	case ferryv1.HelmReleaseKind:
		if h, ok := p.helmReleases[key.NamespacedName]; ok {
			return h
		}
	}
	return nil
}

// deleted says whether the object of the pass named key is being deleted.
func (p *pass) deleted(key objKey) bool {
	obj := p.object(key)
	return obj != nil && !obj.GetDeletionTimestamp().IsZero()
}

// due says whether ReconcileAll reconciles the object named key in pass p, and why: a pass
// that forces reconciles everything; otherwise an object is due when it is suspended (to be
// logged as skipped), lacks the finalizer, has a generation not yet observed, is not Ready, has
// a reconcile.ferry.dev/requestedAt annotation not yet handled, has a source (Git commit or
// chart version of the pass's record) other than its last applied revision, depends on an
// object reconciled earlier in the pass, or was last reconciled by this Reconciler longer than
// its interval ago (or never). Objects being deleted are never due: they are finalized.
func (r *Reconciler) due(ctx context.Context, p *pass, key objKey) (bool, string) {
	obj := p.object(key)
	if obj == nil || !obj.GetDeletionTimestamp().IsZero() {
		return false, ""
	}
	if p.force {
		return true, "forced"
	}
	var (
		suspend        bool
		conds          []metav1.Condition
		observed       int64
		handled        string
		applied        string
		interval       time.Duration
		deps           []objKey
		currentVersion func() (string, bool)
	)
	switch o := obj.(type) {
	case *ferryv1.Kustomization:
		suspend, conds, observed = o.Spec.Suspend, o.Status.Conditions, o.Status.ObservedGeneration
		handled, applied, interval = o.Status.LastHandledReconcileAt, o.Status.LastAppliedRevision, o.Spec.Interval.Duration
		deps = dependencyKeys(ferryv1.KustomizationKind, o.Namespace, o.Spec.DependsOn)
		currentVersion = func() (string, bool) {
			if o.Spec.SourceRef.Kind != ferryv1.GitSourceKind {
				return "", false
			}
			src, err := p.source(ctx, o.Spec.SourceRef.Name)
			if err != nil {
				return "", false
			}
			return src.commit, true
		}
	case *ferryv1.HelmRelease:
		suspend, conds, observed = o.Spec.Suspend, o.Status.Conditions, o.Status.ObservedGeneration
		handled, applied, interval = o.Status.LastHandledReconcileAt, o.Status.LastAppliedRevision, o.Spec.Interval.Duration
		deps = dependencyKeys(ferryv1.HelmReleaseKind, o.Namespace, o.Spec.DependsOn)
		currentVersion = func() (string, bool) {
			ch, err := p.chart(ctx, o.Spec.Chart.Name)
			if err != nil {
				return "", false
			}
			return ch.version, true
		}
	}
	switch {
	case suspend:
		return true, "suspended"
	case !controllerutil.ContainsFinalizer(obj, ferryv1.Finalizer):
		return true, "no finalizer yet"
	case obj.GetGeneration() != observed:
		return true, "new generation"
	case !apimeta.IsStatusConditionTrue(conds, ferryv1.ReadyCondition):
		return true, "not ready"
	}
	if v, ok := obj.GetAnnotations()[ferryv1.ReconcileRequestAnnotation]; ok && v != handled {
		return true, "requested"
	}
	if rev, ok := currentVersion(); !ok || rev != applied {
		return true, "new revision"
	}
	for _, d := range deps {
		if p.ran[d] {
			return true, "dependency reconciled"
		}
	}
	r.mu.Lock()
	last, ok := r.lastRun[key]
	r.mu.Unlock()
	if !ok {
		return true, "first pass"
	}
	if time.Since(last) >= interval {
		return true, "interval elapsed"
	}
	return false, ""
}

// ran records that the object named key was reconciled in pass p (p may be nil) just now.
func (r *Reconciler) ran(p *pass, key objKey) {
	if p != nil {
		p.ran[key] = true
	}
	r.mu.Lock()
	r.lastRun[key] = time.Now()
	r.mu.Unlock()
}

// forget drops what the Reconciler remembers of the object named key.
func (r *Reconciler) forget(key objKey) {
	r.mu.Lock()
	delete(r.lastRun, key)
	r.mu.Unlock()
}

// requestedAt returns the value of obj's reconcile.ferry.dev/requestedAt annotation and
// whether it has one.
func requestedAt(obj client.Object) (string, bool) {
	v, ok := obj.GetAnnotations()[ferryv1.ReconcileRequestAnnotation]
	return v, ok
}

package reconcile

import (
	"context"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ferry-gitops/ferry/api"
)

// object returns the object of the pass named key, or nil.
func (p *pass) object(key objKey) subject {
	return p.objects[key]
}

// deleted says whether the object of the pass named key is being deleted.
func (p *pass) deleted(key objKey) bool {
	o := p.object(key)
	return o != nil && !o.api().GetDeletionTimestamp().IsZero()
}

// due says whether ReconcileAll reconciles the object named key in pass p, and why: a pass
// that forces reconciles everything; otherwise an object is due when it is suspended (to be
// logged as skipped), lacks the finalizer, has a generation not yet observed, is not Ready, has
// a reconcile.fluxcd.io/requestedAt annotation not yet handled, has a source (Git commit or
// chart version of the pass's record) other than its last applied revision, depends on an
// object reconciled earlier in the pass, or was last reconciled by this Reconciler longer than
// its interval ago (or never). Objects being deleted are never due: they are finalized.
func (r *Reconciler) due(ctx context.Context, p *pass, key objKey) (bool, string) {
	o := p.object(key)
	if o == nil || !o.api().GetDeletionTimestamp().IsZero() {
		return false, ""
	}
	if p.force {
		return true, "forced"
	}
	obj, f := o.api(), o.fields()
	switch {
	case f.suspend:
		return true, "suspended"
	case !controllerutil.ContainsFinalizer(obj, api.Finalizer):
		return true, "no finalizer yet"
	case obj.GetGeneration() != *f.observedGeneration:
		return true, "new generation"
	case !conditions.IsTrue(obj, meta.ReadyCondition):
		return true, "not ready"
	}
	if v, ok := obj.GetAnnotations()[meta.ReconcileRequestAnnotation]; ok && v != *f.lastHandledReconcileAt {
		return true, "requested"
	}
	if rev, ok := o.sourceRevision(ctx, r, p); !ok || rev != f.appliedRevision() {
		return true, "new revision"
	}
	p.mu.Lock()
	depRan := false
	for _, d := range dependenciesOf(o) {
		depRan = depRan || p.ran[d]
	}
	p.mu.Unlock()
	if depRan {
		return true, "dependency reconciled"
	}
	r.mu.Lock()
	last, ok := r.lastRun[key]
	r.mu.Unlock()
	if !ok {
		return true, "first pass"
	}
	if time.Since(last) >= f.interval {
		return true, "interval elapsed"
	}
	return false, ""
}

// ran records that the object named key was reconciled in pass p (p may be nil) just now.
func (r *Reconciler) ran(p *pass, key objKey) {
	if p != nil {
		p.mu.Lock()
		p.ran[key] = true
		p.mu.Unlock()
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

// requestedAt returns the value of obj's reconcile.fluxcd.io/requestedAt annotation and
// whether it has one.
func requestedAt(obj client.Object) (string, bool) {
	v, ok := obj.GetAnnotations()[meta.ReconcileRequestAnnotation]
	return v, ok
}

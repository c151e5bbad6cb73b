package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/runtime/patch"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/ferry-gitops/ferry/api"
)

// finalizeAction is the action of the Events recorded about a deleted object.
const finalizeAction = "Finalize"

// addFinalizer puts api.Finalizer on obj when it lacks it, updating obj from the server's
// answer. The patch carries obj's resourceVersion; on a conflict obj is read again and the
// patch retried.
func (r *Reconciler) addFinalizer(ctx context.Context, obj client.Object) error {
	return r.patchFinalizer(ctx, obj, true)
}

// removeFinalizer takes api.Finalizer off obj; an object already gone is not an error.
func (r *Reconciler) removeFinalizer(ctx context.Context, obj client.Object) error {
	err := r.patchFinalizer(ctx, obj, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (r *Reconciler) patchFinalizer(ctx context.Context, obj client.Object, add bool) error {
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if err := r.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
		}
		first = false
		if controllerutil.ContainsFinalizer(obj, api.Finalizer) == add {
			return nil
		}
		orig := obj.DeepCopyObject().(client.Object)
		if add {
			controllerutil.AddFinalizer(obj, api.Finalizer)
		} else {
			controllerutil.RemoveFinalizer(obj, api.Finalizer)
		}
		return r.client.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
}

// finalizeObject handles a deleted object: its kind cleans up after it (unless it is
// suspended, as its spec says), then the finalizer is removed, with an Event, a log line and
// a Result. When the cleanup fails, the finalizer stays (Ready=False) and the next pass tries
// again.
func (r *Reconciler) finalizeObject(ctx context.Context, o subject, a attempt) error {
	obj := o.api()
	r.forget(keyOf(o))
	if !controllerutil.ContainsFinalizer(obj, api.Finalizer) {
		return nil
	}
	start := time.Now()
	c := o.finalize(ctx, r, a)
	if c.failed {
		return r.finalizeFailed(ctx, o, start, outcome{reason: c.reason, message: c.note}, a.log)
	}
	typ := "Normal"
	if c.warning {
		typ = "Warning"
	}
	return r.finalized(ctx, o, start, typ, c.reason, c.note, a.log)
}

// finalized removes the finalizer and records an Event and a log line with note.
func (r *Reconciler) finalized(ctx context.Context, o subject, start time.Time, typ, reason, note string, log *slog.Logger) error {
	obj := o.api()
	name := obj.GetNamespace() + "/" + obj.GetName()
	if err := r.removeFinalizer(ctx, obj); err != nil {
		return fmt.Errorf("%s %s: remove finalizer: %w", o.kind().label, name, err)
	}
	note += "; finalizer removed"
	r.events.Eventf(obj, nil, typ, reason, finalizeAction, "%s", truncate(note, eventNoteLimit))
	if typ == "Warning" {
		log.Warn("finalized", "reason", reason, "message", note)
	} else {
		log.Info("finalized", "message", note)
	}
	if r.onResult != nil {
		r.onResult(Result{Kind: o.kind().name, Namespace: obj.GetNamespace(), Name: obj.GetName(), Duration: time.Since(start), Reason: reason, Message: note, Deleted: true})
	}
	return nil
}

// finalizeFailed writes Ready=False with out to a deleted object whose finalization failed,
// records a Warning Event and returns the error; the finalizer stays.
func (r *Reconciler) finalizeFailed(ctx context.Context, o subject, start time.Time, out outcome, log *slog.Logger) error {
	obj := o.api()
	name := obj.GetNamespace() + "/" + obj.GetName()
	patcher := patch.NewSerialPatcher(obj, r.client)
	conditions.MarkFalse(obj, meta.ReadyCondition, out.reason, "%s", truncate(out.message, 32000))
	r.events.Eventf(obj, nil, "Warning", out.reason, finalizeAction, "%s", truncate(out.message, eventNoteLimit))
	log.Warn("finalization failed, finalizer kept", "reason", out.reason, "message", out.message)
	if r.onResult != nil {
		r.onResult(Result{Kind: o.kind().name, Namespace: obj.GetNamespace(), Name: obj.GetName(), Duration: time.Since(start), Reason: out.reason, Message: out.message})
	}
	err := fmt.Errorf("%s %s: %s: %s", o.kind().label, name, out.reason, out.message)
	if perr := patcher.Patch(ctx, obj, patch.WithOwnedConditions{Conditions: ownedConditions}); perr != nil && !isNotFound(perr) {
		return fmt.Errorf("%w; write status: %v", err, perr)
	}
	return err
}

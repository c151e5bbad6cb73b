package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
)

// finalizeAction is the action of the Events recorded about a deleted object.
const finalizeAction = "Finalize"

// addFinalizer puts ferryv1.Finalizer on obj when it lacks it, updating obj from the server's
// answer. The patch carries obj's resourceVersion; on a conflict obj is read again and the
// patch retried.
func (r *Reconciler) addFinalizer(ctx context.Context, obj client.Object) error {
	return r.patchFinalizer(ctx, obj, true)
}

// removeFinalizer takes ferryv1.Finalizer off obj; an object already gone is not an error.
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
		if controllerutil.ContainsFinalizer(obj, ferryv1.Finalizer) == add {
			return nil
		}
		orig := obj.DeepCopyObject().(client.Object)
		if add {
			controllerutil.AddFinalizer(obj, ferryv1.Finalizer)
		} else {
			controllerutil.RemoveFinalizer(obj, ferryv1.Finalizer)
		}
		return r.client.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
}

// finalizeKustomization handles a deleted Kustomization: unless it is suspended or does not
// prune, the objects of its inventory that still carry its owner labels are deleted; then
// its finalizer is removed. When the deletion fails, the finalizer stays (Ready=False
// PruneFailed) and the next pass tries again.
func (r *Reconciler) finalizeKustomization(ctx context.Context, k *ferryv1.Kustomization, log *slog.Logger) error {
	r.forget(kustomizationKey(k))
	if !controllerutil.ContainsFinalizer(k, ferryv1.Finalizer) {
		return nil
	}
	start := time.Now()
	name := k.Namespace + "/" + k.Name
	entries := 0
	if k.Status.Inventory != nil {
		entries = len(k.Status.Inventory.Entries)
	}
	typ, reason, note := "Normal", ferryv1.FinalizedReason, ""
	switch {
	case k.Spec.Suspend:
		note = fmt.Sprintf("suspended: nothing deleted, %d objects of the inventory left in place", entries)
	case !k.Spec.Prune:
		note = fmt.Sprintf("prune is off: %d objects of the inventory left in place", entries)
	case entries == 0:
		note = "the inventory is empty: nothing to delete"
	default:
		if out, ok := r.serviceAccountExists(ctx, k); !ok {
			// As Flux: without the ServiceAccount nothing can be deleted as it, and keeping the
			// finalizer would block the deletion (of the namespace, often) for good.
			typ, reason = "Warning", out.reason
			note = fmt.Sprintf("%s: %d objects of the inventory left in place", out.message, entries)
			break
		}
		deleted, err := r.pruneInventory(ctx, k, log)
		if err != nil {
			out := outcome{reason: ferryv1.PruneFailedReason, message: fmt.Sprintf("delete the inventory of the deleted kustomization: %v", err)}
			return r.finalizeFailed(ctx, k, &k.Status.Conditions, start, out, log)
		}
		note = fmt.Sprintf("deleted %d of %d objects of the inventory", deleted, entries)
	}
	return r.finalized(ctx, k, name, start, typ, reason, note, log)
}

// pruneInventory deletes the objects of k's inventory that carry k's owner labels, as k's
// ServiceAccount when it names one, and returns how many it deleted.
func (r *Reconciler) pruneInventory(ctx context.Context, k *ferryv1.Kustomization, log *slog.Logger) (int, error) {
	timeout := defaultTimeout
	if k.Spec.Timeout != nil && k.Spec.Timeout.Duration > 0 {
		timeout = k.Spec.Timeout.Duration
	} else if k.Spec.Interval.Duration > 0 {
		timeout = k.Spec.Interval.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	objs, err := staleObjects(k.Status.Inventory, &ferryv1.ResourceInventory{})
	if err != nil {
		return 0, err
	}
	mgr, err := r.managerFor(k)
	if err != nil {
		return 0, err
	}
	del := ssa.DefaultDeleteOptions()
	del.Inclusions = r.manager.GetOwnerLabels(k.Name, k.Namespace)
	cs, err := mgr.DeleteAll(ctx, objs, del)
	deleted := 0
	if cs != nil {
		for _, e := range cs.Entries {
			log.Info("deleted with the kustomization", "object", e.Subject, "action", string(e.Action))
			if e.Action == ssa.DeletedAction {
				deleted++
			}
		}
	}
	return deleted, err
}

// finalizeHelmRelease handles a deleted HelmRelease: unless it is suspended, its Helm release
// is uninstalled (spec.uninstall: keepHistory, disableHooks, timeout); then its finalizer is
// removed. When the uninstall fails, the finalizer stays (Ready=False UninstallFailed) and the
// next pass tries again.
func (r *Reconciler) finalizeHelmRelease(ctx context.Context, h *ferryv1.HelmRelease, log *slog.Logger) error {
	r.forget(helmReleaseKey(h))
	if !controllerutil.ContainsFinalizer(h, ferryv1.Finalizer) {
		return nil
	}
	start := time.Now()
	name := h.Namespace + "/" + h.Name
	relName, relNS := releaseNames(h)
	what := fmt.Sprintf("release %s/%s", relNS, relName)
	typ, reason, note := "Normal", ferryv1.FinalizedReason, ""
	if h.Spec.Suspend {
		note = "suspended: " + what + " left installed"
		return r.finalized(ctx, h, name, start, typ, reason, note, log)
	}
	if out, ok := r.serviceAccountFound(ctx, h.Namespace, h.Spec.ServiceAccountName, ferryv1.UninstallFailedReason); !ok {
		if out.reason != ferryv1.ServiceAccountNotFoundReason {
			return r.finalizeFailed(ctx, h, &h.Status.Conditions, start, out, log)
		}
		note = fmt.Sprintf("%s: %s left installed", out.message, what)
		return r.finalized(ctx, h, name, start, "Warning", out.reason, note, log)
	}
	cfg, err := r.helmConfig(h, relNS, log)
	if err != nil {
		return r.finalizeFailed(ctx, h, &h.Status.Conditions, start, outcome{reason: ferryv1.UninstallFailedReason, message: err.Error()}, log)
	}
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound = true
	un.WaitStrategy = kube.HookOnlyStrategy
	un.DeletionPropagation = string(metav1.DeletePropagationBackground)
	un.Timeout = helmTimeout(h)
	if u := h.Spec.Uninstall; u != nil {
		if u.Timeout != nil && u.Timeout.Duration > 0 {
			un.Timeout = u.Timeout.Duration
		}
		un.KeepHistory = u.KeepHistory
		un.DisableHooks = u.DisableHooks
	}
	resp, err := un.Run(relName)
	if err != nil {
		out := outcome{reason: ferryv1.UninstallFailedReason, message: fmt.Sprintf("uninstall %s of the deleted helmrelease: %v", what, err)}
		return r.finalizeFailed(ctx, h, &h.Status.Conditions, start, out, log)
	}
	switch {
	case resp == nil:
		note = what + " was not installed"
	case un.KeepHistory:
		note = "uninstalled " + what + ", history kept"
	default:
		note = "uninstalled " + what
	}
	return r.finalized(ctx, h, name, start, typ, reason, note, log)
}

// finalized removes obj's finalizer and records an Event and a log line with note.
func (r *Reconciler) finalized(ctx context.Context, obj client.Object, name string, start time.Time, typ, reason, note string, log *slog.Logger) error {
	if err := r.removeFinalizer(ctx, obj); err != nil {
		return fmt.Errorf("%s %s: remove finalizer: %w", kindLabel(obj), name, err)
	}
	note += "; finalizer removed"
	r.events.Eventf(obj, nil, typ, reason, finalizeAction, "%s", truncate(note, eventNoteLimit))
	if typ == "Warning" {
		log.Warn("finalized", "reason", reason, "message", note)
	} else {
		log.Info("finalized", "message", note)
	}
	if r.onResult != nil {
		r.onResult(Result{Kind: kindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName(), Duration: time.Since(start), Reason: reason, Message: note, Deleted: true})
	}
	return nil
}

// finalizeFailed writes Ready=False with out to a deleted object whose finalization failed,
// records a Warning Event and returns the error; the finalizer stays.
func (r *Reconciler) finalizeFailed(ctx context.Context, obj client.Object, conds *[]metav1.Condition, start time.Time, out outcome, log *slog.Logger) error {
	name := obj.GetNamespace() + "/" + obj.GetName()
	orig := obj.DeepCopyObject().(client.Object)
	apimeta.SetStatusCondition(conds, metav1.Condition{
		Type:               ferryv1.ReadyCondition,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: obj.GetGeneration(),
		Reason:             out.reason,
		Message:            truncate(out.message, 32000),
	})
	r.events.Eventf(obj, nil, "Warning", out.reason, finalizeAction, "%s", truncate(out.message, eventNoteLimit))
	log.Warn("finalization failed, finalizer kept", "reason", out.reason, "message", out.message)
	if r.onResult != nil {
		r.onResult(Result{Kind: kindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName(), Duration: time.Since(start), Reason: out.reason, Message: out.message})
	}
	err := fmt.Errorf("%s %s: %s: %s", kindLabel(obj), name, out.reason, out.message)
	if perr := r.client.Status().Patch(ctx, obj, client.MergeFrom(orig)); perr != nil && !apierrors.IsNotFound(perr) {
		return fmt.Errorf("%w; write status: %v", err, perr)
	}
	return err
}

// kindOf returns ferryv1.KustomizationKind or ferryv1.HelmReleaseKind (typed objects read
// from the API server do not keep their kind).
func kindOf(obj client.Object) string {
	if _, ok := obj.(*ferryv1.HelmRelease); ok {
		return ferryv1.HelmReleaseKind
	}
	return ferryv1.KustomizationKind
}

// kindLabel is "kustomization" or "helmrelease", as error messages name the kinds.
func kindLabel(obj client.Object) string {
	if _, ok := obj.(*ferryv1.HelmRelease); ok {
		return "helmrelease"
	}
	return "kustomization"
}

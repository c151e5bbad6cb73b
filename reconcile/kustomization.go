package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/ssa"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
)

// The Kustomization kind: build a Git item's folder with kustomize, apply it with server-side
// apply, prune, wait; on deletion, prune the inventory (docs/reconcile.md).

var kustomizationKind = &kind{
	name:  ferryv1.KustomizationKind,
	label: "kustomization",
	new:   func() subject { return kustomization{&ferryv1.Kustomization{}} },
	list: func(ctx context.Context, c client.Reader) ([]subject, error) {
		var list ferryv1.KustomizationList
		if err := c.List(ctx, &list); err != nil {
			return nil, err
		}
		out := make([]subject, len(list.Items))
		for i := range list.Items {
			out[i] = kustomization{&list.Items[i]}
		}
		return out, nil
	},
}

// kustomization is a Kustomization as the runner reconciles it.
type kustomization struct{ *ferryv1.Kustomization }

func (k kustomization) api() conditions.Setter { return k.Kustomization }
func (k kustomization) kind() *kind            { return kustomizationKind }

func (k kustomization) fields() fields {
	return fields{
		suspend: k.Spec.Suspend, interval: k.Spec.Interval.Duration, timeout: k.Spec.Timeout, dependsOn: k.Spec.DependsOn,
		observedGeneration:     &k.Status.ObservedGeneration,
		lastAppliedRevision:    &k.Status.LastAppliedRevision,
		lastHandledReconcileAt: &k.Status.LastHandledReconcileAt,
	}
}

// sourceRevision is the commit of the Git item the Kustomization builds.
func (k kustomization) sourceRevision(ctx context.Context, p *pass) (string, bool) {
	if k.Spec.SourceRef.Kind != ferryv1.GitSourceKind {
		return "", false
	}
	src, err := p.source(ctx, k.Spec.SourceRef.Name)
	if err != nil {
		return "", false
	}
	return src.commit, true
}

// reconcile does one reconciliation and updates k's status fields but its conditions.
func (k kustomization) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	p, log := a.pass, a.log
	if k.Spec.SourceRef.Kind != ferryv1.GitSourceKind {
		return outcome{reason: ferryv1.SourceNotFoundReason, message: fmt.Sprintf("source kind %q is not supported (only %s)", k.Spec.SourceRef.Kind, ferryv1.GitSourceKind)}.terminal()
	}
	src, err := p.source(ctx, k.Spec.SourceRef.Name)
	if err != nil {
		reason := ferryv1.BuildFailedReason
		if errors.Is(err, errSourceNotFound) {
			reason = ferryv1.SourceNotFoundReason
		}
		return outcome{reason: reason, message: fmt.Sprintf("%s %s: %v", ferryv1.GitSourceKind, k.Spec.SourceRef.Name, err)}
	}
	k.Status.LastAttemptedRevision = src.commit
	if msg := r.dependenciesReady(ctx, p, k); msg != "" {
		return outcome{reason: ferryv1.DependencyNotReadyReason, message: msg}
	}
	if out, ok := r.serviceAccountExists(ctx, k.Kustomization); !ok {
		return out
	}

	timeout := a.timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fsys := filesys.MakeFsInMemory()
	if err := src.extract(ctx, p.cache, fsys, srcRoot); err != nil {
		return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: extract %s: %v", src.commit, k.Spec.SourceRef.Name, err)}
	}
	var vars map[string]string
	if k.Spec.PostBuild != nil {
		if vars, err = r.substitutionVars(ctx, k.Kustomization); err != nil {
			return failure(ferryv1.BuildFailedReason, fmt.Sprintf("revision %s: postBuild: %v", src.commit, err), err)
		}
	}
	objs, err := build(fsys, k.Spec.Path, overlayOf(k.Kustomization), vars)
	if err != nil {
		return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
	}
	r.manager.SetOwnerLabels(objs, k.Name, k.Namespace)

	mgr, err := r.managerFor(k.Kustomization)
	if err != nil {
		return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
	}
	if err := r.dryRun(ctx, mgr.Client(), k.Kustomization, objs); err != nil {
		return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: nothing applied: %v", src.commit, err)}
	}

	opts := ssa.DefaultApplyOptions()
	opts.WaitTimeout = timeout
	cs, applyErr := mgr.ApplyAllStaged(ctx, objs, opts)
	applied := inventoryOf(cs)
	old := k.Status.Inventory
	if applyErr != nil {
		// Keep tracking what was applied before and what this attempt applied.
		k.Status.Inventory = mergeInventories(old, applied)
		return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, applyErr)}
	}
	k.Status.Inventory = applied
	pruned := 0
	if k.Spec.Prune {
		stale, err := staleObjects(old, applied)
		if err != nil {
			return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: prune: %v", src.commit, err)}
		}
		if len(stale) > 0 {
			del := ssa.DefaultDeleteOptions()
			del.Inclusions = r.manager.GetOwnerLabels(k.Name, k.Namespace)
			pcs, err := mgr.DeleteAll(ctx, stale, del)
			if err != nil {
				k.Status.Inventory = mergeInventories(old, applied)
				return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: prune: %v", src.commit, err)}
			}
			for _, e := range pcs.Entries {
				log.Info("pruned", "object", e.Subject, "action", string(e.Action))
				if e.Action == ssa.DeletedAction {
					pruned++
				}
			}
		}
	}
	if k.Spec.Wait {
		wo := ssa.WaitOptions{Interval: 2 * time.Second, Timeout: timeout}
		if err := mgr.WaitForSetWithContext(ctx, cs.ToObjMetadataSet(), wo); err != nil {
			return outcome{reason: ferryv1.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
		}
	}
	if len(k.Spec.HealthChecks) > 0 {
		if msg := r.healthCheck(ctx, mgr, k.Kustomization, timeout); msg != "" {
			return outcome{reason: ferryv1.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %s", src.commit, msg)}
		}
	}
	unchanged := k.Status.LastAppliedRevision == src.commit && k.Status.ObservedGeneration == k.Generation
	k.Status.LastAppliedRevision = src.commit
	created, configured := changeCounts(cs)
	drift := 0
	if unchanged {
		drift = created + configured // the source did not move: whatever changed was changed in the cluster
	}
	return outcome{
		ready:   true,
		drift:   drift,
		reason:  ferryv1.ReconciliationSucceededReason,
		message: "Applied revision: " + src.commit,
		event:   fmt.Sprintf("Applied revision: %s: %d created, %d configured, %d pruned", src.commit, created, configured, pruned),
	}
}

// finalize handles a deleted Kustomization: unless it is suspended or does not prune, the
// objects of its inventory that still carry its owner labels are deleted. When the deletion
// fails, the cleanup fails with PruneFailed.
func (k kustomization) finalize(ctx context.Context, r *Reconciler, a attempt) cleanup {
	entries := 0
	if k.Status.Inventory != nil {
		entries = len(k.Status.Inventory.Entries)
	}
	switch {
	case k.Spec.Suspend:
		return cleanup{reason: ferryv1.FinalizedReason, note: fmt.Sprintf("suspended: nothing deleted, %d objects of the inventory left in place", entries)}
	case !k.Spec.Prune:
		return cleanup{reason: ferryv1.FinalizedReason, note: fmt.Sprintf("prune is off: %d objects of the inventory left in place", entries)}
	case entries == 0:
		return cleanup{reason: ferryv1.FinalizedReason, note: "the inventory is empty: nothing to delete"}
	}
	if out, ok := r.serviceAccountExists(ctx, k.Kustomization); !ok {
		// As Flux: without the ServiceAccount nothing can be deleted as it, and keeping the
		// finalizer would block the deletion (of the namespace, often) for good.
		return cleanup{warning: true, reason: out.reason, note: fmt.Sprintf("%s: %d objects of the inventory left in place", out.message, entries)}
	}
	deleted, err := k.pruneInventory(ctx, r, a)
	if err != nil {
		return cleanup{failed: true, reason: ferryv1.PruneFailedReason, note: fmt.Sprintf("delete the inventory of the deleted kustomization: %v", err)}
	}
	return cleanup{reason: ferryv1.FinalizedReason, note: fmt.Sprintf("deleted %d of %d objects of the inventory", deleted, entries)}
}

// pruneInventory deletes the objects of k's inventory that carry k's owner labels, as k's
// ServiceAccount when it names one, within the timeout, and returns how many it deleted.
func (k kustomization) pruneInventory(ctx context.Context, r *Reconciler, a attempt) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	objs, err := staleObjects(k.Status.Inventory, &ferryv1.ResourceInventory{})
	if err != nil {
		return 0, err
	}
	mgr, err := r.managerFor(k.Kustomization)
	if err != nil {
		return 0, err
	}
	del := ssa.DefaultDeleteOptions()
	del.Inclusions = r.manager.GetOwnerLabels(k.Name, k.Namespace)
	cs, err := mgr.DeleteAll(ctx, objs, del)
	deleted := 0
	if cs != nil {
		for _, e := range cs.Entries {
			a.log.Info("deleted with the kustomization", "object", e.Subject, "action", string(e.Action))
			if e.Action == ssa.DeletedAction {
				deleted++
			}
		}
	}
	return deleted, err
}

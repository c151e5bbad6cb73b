package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/ssa"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/kbuild"
)

// The Kustomization kind: build a Git item's folder with kustomize, apply it with server-side
// apply, prune, wait; on deletion, prune the inventory (docs/reconcile.md).

var kustomizationKind = &kind{
	name:  kustomizev1.KustomizationKind,
	label: "kustomization",
	new:   func() subject { return kustomization{&kustomizev1.Kustomization{}} },
	list: func(ctx context.Context, c client.Reader) ([]subject, error) {
		var list kustomizev1.KustomizationList
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
type kustomization struct{ *kustomizev1.Kustomization }

func (k kustomization) api() conditions.Setter { return k.Kustomization }
func (k kustomization) kind() *kind            { return kustomizationKind }

func (k kustomization) fields() fields {
	return fields{
		suspend: k.Spec.Suspend, interval: k.Spec.Interval.Duration, timeout: k.Spec.Timeout,
		dependsOn:              dependencyKeys(kustomizev1.KustomizationKind, k.Namespace, refNames(k.GetDependsOn(), func(d meta.DependencyReference) (string, string) { return d.Namespace, d.Name })),
		observedGeneration:     &k.Status.ObservedGeneration,
		appliedRevision:        func() string { return k.Status.LastAppliedRevision },
		lastHandledReconcileAt: &k.Status.LastHandledReconcileAt,
	}
}

// sourceRef returns the kind, namespace and name of the Kustomization's source.
func (k kustomization) sourceRef() (kind, ns, name string) {
	ref := k.Spec.SourceRef
	ns = ref.Namespace
	if ns == "" {
		ns = k.Namespace
	}
	return ref.Kind, ns, ref.Name
}

// sourceRevision is the revision of the artifact the Kustomization builds.
func (k kustomization) sourceRevision(ctx context.Context, r *Reconciler, p *pass) (string, bool) {
	kind, ns, name := k.sourceRef()
	res, err := p.resolveRef(ctx, r, kind, ns, name)
	if err != nil || !res.hasTree() {
		return "", false
	}
	return res.revision, true
}

// reconcile does one reconciliation and updates k's status fields but its conditions.
func (k kustomization) reconcile(ctx context.Context, r *Reconciler, a attempt) outcome {
	p, log := a.pass, a.log
	if msg := unsupportedKustomization(k.Kustomization); msg != "" {
		return outcome{reason: api.UnsupportedReason, message: msg}.terminal()
	}
	if out, ok := r.crossNamespace(k.Namespace, kustomizationRefs(k.Kustomization)); !ok {
		return out
	}
	sa := r.actor(ctx, p, keyOf(k), k.Spec.ServiceAccountName)
	kind, ns, name := k.sourceRef()
	if kind != sourcev1.GitRepositoryKind && kind != sourcev1.OCIRepositoryKind && kind != sourcev1.ExternalArtifactKind {
		return outcome{reason: api.UnsupportedReason, message: fmt.Sprintf("sourceRef kind %q is not supported: GitRepository, OCIRepository or ExternalArtifact", kind)}.terminal()
	}
	res, err := p.resolveRef(ctx, r, kind, ns, name)
	if err != nil {
		return outcome{reason: sourceReason(err), message: fmt.Sprintf("Source '%s/%s/%s': %v", kind, ns, name, err)}
	}
	if !res.hasTree() {
		return outcome{reason: meta.ArtifactFailedReason, message: fmt.Sprintf("Source '%s/%s/%s' resolves to item %q, which holds no manifests (a chart?)", kind, ns, name, res.item.Name)}
	}
	revision := res.revision
	k.Status.LastAttemptedRevision = revision
	if msg := r.dependenciesReady(ctx, p, k); msg != "" {
		return outcome{reason: meta.DependencyNotReadyReason, message: msg}
	}
	tgt, err := r.targetOf(ctx, k.Namespace, k.Spec.KubeConfig)
	if err != nil {
		return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: nothing applied: %v", revision, err)}
	}
	if out, ok := r.serviceAccountFound(ctx, tgt, k.Namespace, sa, meta.ReconciliationFailedReason); !ok {
		return out
	}

	timeout := a.timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fsys := filesys.MakeFsInMemory()
	if err := res.writeTree(ctx, p, fsys, kbuild.SourceRoot); err != nil {
		return outcome{reason: meta.BuildFailedReason, message: fmt.Sprintf("revision %s: extract %s/%s/%s: %v", revision, kind, ns, name, err)}
	}
	var vars map[string]string
	if k.Spec.PostBuild != nil {
		reader, err := r.readerAs(tgt, k.Namespace, sa)
		if err != nil {
			return outcome{reason: meta.BuildFailedReason, message: fmt.Sprintf("revision %s: postBuild: %v", revision, err)}
		}
		if vars, err = r.substitutionVars(ctx, reader, k.Kustomization); err != nil {
			return failure(meta.BuildFailedReason, fmt.Sprintf("revision %s: postBuild: %v", revision, err), err)
		}
	}
	objs, err := kbuild.Build(fsys, k.Spec.Path, kbuild.OverlayOf(k.Kustomization), vars)
	if err != nil {
		return outcome{reason: meta.BuildFailedReason, message: fmt.Sprintf("revision %s: %v", revision, err)}
	}
	objs, skipped := kbuild.SkipFluxControllers(objs)
	for _, s := range skipped {
		log.Info("skipped: sync reconciles in place of Flux's controllers", "object", s)
	}
	migrated, err := kbuild.MigrateFluxAPIs(objs)
	if err != nil {
		return outcome{reason: meta.BuildFailedReason, message: fmt.Sprintf("revision %s: nothing applied: %v", revision, err)}
	}
	for _, m := range migrated {
		log.Info("applied as the Flux API version served now", "object", m)
	}
	r.manager.SetOwnerLabels(objs, k.Name, k.Namespace)

	if sa != "" {
		log.Debug("applying", "as", serviceAccountUser(k.Namespace, sa))
	}
	mgr, err := managerAs(tgt, k.Namespace, sa)
	if err != nil {
		return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: %v", revision, err)}
	}
	if err := dryRun(ctx, mgr.Client(), k.Namespace, sa, objs); err != nil {
		return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: nothing applied: %v", revision, err)}
	}

	opts := ssa.DefaultApplyOptions()
	opts.WaitTimeout = timeout
	cs, applyErr := mgr.ApplyAllStaged(ctx, objs, opts)
	applied := inventoryOf(cs)
	old := k.Status.Inventory
	if applyErr != nil {
		// Keep tracking what was applied before and what this attempt applied.
		k.Status.Inventory = mergeInventories(old, applied)
		return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: %v", revision, applyErr)}
	}
	k.Status.Inventory = applied
	pruned := 0
	if k.Spec.Prune {
		stale, err := staleObjects(old, applied)
		if err != nil {
			return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: prune: %v", revision, err)}
		}
		if len(stale) > 0 {
			del := ssa.DefaultDeleteOptions()
			del.Inclusions = r.manager.GetOwnerLabels(k.Name, k.Namespace)
			pcs, err := mgr.DeleteAll(ctx, stale, del)
			if err != nil {
				k.Status.Inventory = mergeInventories(old, applied)
				return outcome{reason: meta.ReconciliationFailedReason, message: fmt.Sprintf("revision %s: prune: %v", revision, err)}
			}
			for _, e := range pcs.Entries {
				log.Info("pruned", "object", e.Subject, "action", string(e.Action))
				if e.Action == ssa.DeletedAction {
					pruned++
				}
			}
		}
	}
	var waitHere object.ObjMetadataSet
	if k.Spec.Wait {
		others := cs.ToObjMetadataSet()
		if !tgt.remote() {
			// Flux objects sync itself reconciles here are read once, not waited for; in
			// another cluster they are that cluster's to reconcile, and waited for.
			waitHere, others = splitWait(others)
		}
		wo := ssa.WaitOptions{Interval: 2 * time.Second, Timeout: timeout}
		if err := mgr.WaitForSetWithContext(ctx, others, wo); err != nil {
			return outcome{reason: meta.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %v", revision, err)}
		}
	}
	if len(k.Spec.HealthChecks) > 0 {
		if msg := r.healthCheck(ctx, mgr, k.Kustomization, timeout); msg != "" {
			return outcome{reason: meta.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %s", revision, msg)}
		}
	}
	if msg := r.notReady(ctx, r.client, waitHere); msg != "" {
		return outcome{reason: meta.ProgressingReason, message: fmt.Sprintf("revision %s: applied, waiting for what sync reconciles next: %s", revision, msg)}
	}
	unchanged := k.Status.LastAppliedRevision == revision && k.Status.ObservedGeneration == k.Generation
	k.Status.LastAppliedRevision = revision
	created, configured := changeCounts(cs)
	drift := 0
	if unchanged {
		drift = created + configured // the source did not move: whatever changed was changed in the cluster
	}
	return outcome{
		ready:   true,
		drift:   drift,
		reason:  meta.ReconciliationSucceededReason,
		message: "Applied revision: " + revision + skippedNote(skipped) + migratedNote(migrated),
		event:   fmt.Sprintf("Applied revision: %s: %d created, %d configured, %d pruned", revision, created, configured, pruned),
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
		return cleanup{reason: api.FinalizedReason, note: fmt.Sprintf("suspended: nothing deleted, %d objects of the inventory left in place", entries)}
	case !k.Spec.Prune:
		return cleanup{reason: api.FinalizedReason, note: fmt.Sprintf("prune is off: %d objects of the inventory left in place", entries)}
	case entries == 0:
		return cleanup{reason: api.FinalizedReason, note: "the inventory is empty: nothing to delete"}
	}
	tgt, err := r.targetOf(ctx, k.Namespace, k.Spec.KubeConfig)
	if errors.Is(err, errKubeConfig) {
		// As for a missing ServiceAccount: the cluster cannot be reached as the deleted
		// Kustomization said, and keeping the finalizer would block the deletion for good.
		return cleanup{warning: true, reason: meta.ReconciliationFailedReason, note: fmt.Sprintf("%v: %d objects of the inventory left in place", err, entries)}
	}
	if err != nil {
		return cleanup{failed: true, reason: meta.PruneFailedReason, note: err.Error()}
	}
	sa := r.actor(ctx, a.pass, keyOf(k), k.Spec.ServiceAccountName)
	if out, ok := r.serviceAccountFound(ctx, tgt, k.Namespace, sa, meta.ReconciliationFailedReason); !ok {
		// As Flux: without the ServiceAccount nothing can be deleted as it, and keeping the
		// finalizer would block the deletion (of the namespace, often) for good.
		return cleanup{warning: true, reason: out.reason, note: fmt.Sprintf("%s: %d objects of the inventory left in place", out.message, entries)}
	}
	deleted, err := k.pruneInventory(ctx, tgt, sa, a)
	if err != nil {
		return cleanup{failed: true, reason: meta.PruneFailedReason, note: fmt.Sprintf("delete the inventory of the deleted kustomization: %v", err)}
	}
	return cleanup{reason: api.FinalizedReason, note: fmt.Sprintf("deleted %d of %d objects of the inventory", deleted, entries)}
}

// pruneInventory deletes the objects of k's inventory that carry k's owner labels, as k's
// ServiceAccount when it names one, within the timeout, and returns how many it deleted.
func (k kustomization) pruneInventory(ctx context.Context, tgt *target, sa string, a attempt) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	objs, err := staleObjects(k.Status.Inventory, &kustomizev1.ResourceInventory{})
	if err != nil {
		return 0, err
	}
	mgr, err := managerAs(tgt, k.Namespace, sa)
	if err != nil {
		return 0, err
	}
	del := ssa.DefaultDeleteOptions()
	del.Inclusions = tgt.manager.GetOwnerLabels(k.Name, k.Namespace)
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

// unsupportedKustomization names a field of k that asks for what sync does not do, or "".
func unsupportedKustomization(k *kustomizev1.Kustomization) string {
	switch {
	case k.Spec.Decryption != nil:
		return "spec.decryption is not supported: sync applies what the signed bundle carries; decrypt on the connected side before mirror packs it, or keep Secrets out of Git"
	case len(k.Spec.Components) > 0:
		return "spec.components is not supported yet: list the components in the folder's kustomization.yaml"
	case len(k.Spec.HealthCheckExprs) > 0:
		return "spec.healthCheckExprs is not supported yet: use spec.healthChecks or spec.wait"
	}
	return ""
}

// skippedNote says, for the Ready message, which of Flux's controllers were left out.
func skippedNote(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of Flux's controllers not applied, sync reconciles in their place: %s", len(skipped), strings.Join(skipped, ", "))
}

// migratedNote says, for the Ready message, how many objects of Flux API versions Flux no
// longer serves were applied as the version it serves.
func migratedNote(migrated []string) string {
	if len(migrated) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d object(s) of Flux API versions no longer served applied as the served version: %s", len(migrated), strings.Join(migrated, ", "))
}

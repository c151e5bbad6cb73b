package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/ssa"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// The bundle's own cluster objects (docs/reconcile.md, "Bundle objects").
const (
	// DefaultNamespace is the namespace of the bundle-object inventory when Options.Namespace
	// is empty.
	DefaultNamespace = "ferry-system"
	// BundleInventoryName is the ConfigMap that records what the bundle's cluster item applied.
	BundleInventoryName = "ferry-bundle-inventory"
	// BundleOwnerGroup prefixes the labels that mark an object as the bundle's:
	// bundle.ferry.dev/name (BundleInventoryName) and bundle.ferry.dev/namespace (the
	// inventory's namespace). Pruning deletes only objects that carry them.
	BundleOwnerGroup = "bundle.ferry.dev"
)

// Keys of the inventory ConfigMap's data.
const (
	inventoryKeyItem      = "item"      // the cluster item's name
	inventoryKeySequence  = "sequence"  // the bundle whose cluster item was last applied
	inventoryKeyRevision  = "revision"  // that item's revision: its layer's digest
	inventoryKeyInventory = "inventory" // {"entries":[{"id","v"}]}, as a Kustomization's
)

// clusterObject is one object of a cluster item, with where it came from.
type clusterObject struct {
	source string // the file, relative to the spec's cluster folder
	index  int    // the document's place in that file, from 1
	obj    *unstructured.Unstructured
}

// where names the document and the object: "apps.yaml document 2 (ConfigMap ns/x)".
func (o clusterObject) where() string {
	return fmt.Sprintf("%s document %d (%s)", o.source, o.index, objectName(o.obj))
}

// decodeClusterManifests decodes a cluster item's layer with bundle.DecodeClusterLayer (the
// format's one decoder) into the objects to apply. Errors name the file and the document.
func decodeClusterManifests(data []byte) ([]clusterObject, error) {
	docs, err := bundle.DecodeClusterLayer(data)
	if err != nil {
		return nil, err
	}
	out := make([]clusterObject, 0, len(docs))
	for _, d := range docs {
		out = append(out, clusterObject{source: d.Source, index: d.Index, obj: &unstructured.Unstructured{Object: d.Object}})
	}
	return out, nil
}

// clusterObjectID is what makes two objects the same: group (not version), kind, namespace
// and name.
func clusterObjectID(o *unstructured.Unstructured) string {
	gk := o.GroupVersionKind().GroupKind()
	return gk.Group + "\x00" + gk.Kind + "\x00" + o.GetNamespace() + "\x00" + o.GetName()
}

// bundleNamespace is the namespace of the inventory ConfigMap.
func (r *Reconciler) bundleNamespace() string {
	if r.bundleNS != "" {
		return r.bundleNS
	}
	return DefaultNamespace
}

// bundleObjects is one application of a bundle's cluster item.
type bundleObjects struct {
	r        *Reconciler
	log      *slog.Logger
	rec      *cache.Record
	item     *cache.RecordItem // nil when the bundle carries none
	cm       *corev1.ConfigMap // the inventory
	revision string
	// decoded is handed the cluster item's objects once decoded (Tenant declarations too).
	decoded func([]clusterObject)
}

// fail records a failure: it logs it, records a Warning Event on the inventory ConfigMap (when
// there is one) and returns the error ReconcileAll returns.
func (b *bundleObjects) fail(reason, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	name := bundle.ClusterItemName
	if b.item != nil {
		name = b.item.Name
	}
	b.log.Error("bundle objects not applied", "reason", reason, "message", msg)
	if b.cm != nil && b.cm.UID != "" {
		b.r.recordEvent(b.cm, outcome{reason: reason, message: msg})
	}
	return fmt.Errorf("bundle %d item %s: %s: %s", b.rec.Sequence, name, reason, msg)
}

// applyBundleObjects applies the cluster item of the cache's current bundle, if any, before a
// pass lists Kustomizations and HelmReleases: it decodes the objects, dry-runs them all (one
// refusal and nothing is applied), applies them with server-side apply in stages (CRDs,
// ClusterRoles and Namespaces first, waited for), prunes the objects the previous cluster item
// applied that this one lacks (only those still carrying the owner labels), and records the
// inventory, the bundle sequence and the item revision in the inventory ConfigMap. Every pass
// applies again, which corrects drift; ssa writes nothing for an object that has not changed.
// decoded is handed the decoded objects, Tenant declarations (read, never applied) included, so
// the pass need not read the item again.
// Without a bundle, or without a cluster item and without an inventory, it does nothing.
func (r *Reconciler) applyBundleObjects(ctx context.Context, c *cache.Snapshot, decoded func([]clusterObject)) error {
	rec := c.Record()
	if rec == nil {
		return nil
	}
	b := &bundleObjects{r: r, rec: rec, log: r.log.With("bundle", rec.Sequence, "item", bundle.ClusterItemName), decoded: decoded}
	for i := range rec.Items {
		if it := &rec.Items[i]; it.Kind == bundle.KindCluster {
			if b.item != nil {
				return b.fail(meta.BuildFailedReason, "the bundle carries two cluster items, %s and %s: at most one", b.item.Name, it.Name)
			}
			b.item = it
			b.log = r.log.With("bundle", rec.Sequence, "item", it.Name)
		}
	}
	ns := r.bundleNamespace()
	cm := &corev1.ConfigMap{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: BundleInventoryName}, cm)
	switch {
	case apierrors.IsNotFound(err):
		if b.item == nil {
			return nil // nothing carried, nothing applied before
		}
		if cm, err = r.createInventory(ctx, ns); err != nil {
			return b.fail(meta.ReconciliationFailedReason, "inventory configmap %s/%s: %v", ns, BundleInventoryName, err)
		}
	case apierrors.IsForbidden(err) && b.item == nil:
		// A reconciler not allowed to read the inventory, and with nothing to apply: it cannot
		// have applied bundle objects before either. Kustomizations and HelmReleases go on.
		b.log.Warn("bundle-object inventory not readable; nothing to apply", "err", err)
		return nil
	case err != nil:
		return b.fail(meta.ReconciliationFailedReason, "inventory configmap %s/%s: %v", ns, BundleInventoryName, err)
	}
	b.cm = cm
	return b.run(ctx, c)
}

// createInventory creates the namespace (if missing) and an empty inventory ConfigMap.
func (r *Reconciler) createInventory(ctx context.Context, ns string) (*corev1.ConfigMap, error) {
	var n corev1.Namespace
	if err := r.client.Get(ctx, types.NamespacedName{Name: ns}, &n); apierrors.IsNotFound(err) {
		n = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if err := r.client.Create(ctx, &n); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create namespace %s: %w", ns, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: BundleInventoryName,
		Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager},
	}}
	if err := r.client.Create(ctx, cm); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		if err := r.client.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
			return nil, err
		}
	}
	return cm, nil
}

func (b *bundleObjects) run(ctx context.Context, c *cache.Snapshot) error {
	r := b.r
	ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	defer cancel()
	old, err := parseBundleInventory(b.cm)
	if err != nil {
		return b.fail(meta.ReconciliationFailedReason, "inventory configmap %s/%s: %v (delete it to start afresh)", b.cm.Namespace, b.cm.Name, err)
	}
	poller := polling.NewStatusPoller(r.client, r.client.RESTMapper(), polling.Options{})
	mgr := ssa.NewResourceManager(r.client, poller, ssa.Owner{Field: FieldManager, Group: BundleOwnerGroup})
	owner := mgr.GetOwnerLabels(BundleInventoryName, b.cm.Namespace)

	var objs []clusterObject
	if b.item != nil {
		data, rev, err := readClusterLayer(ctx, c, b.item)
		if err != nil {
			return b.fail(meta.BuildFailedReason, "%v", err)
		}
		b.revision = rev
		if objs, err = decodeClusterManifests(data); err != nil {
			return b.fail(meta.BuildFailedReason, "revision %s: %v", rev, err)
		}
		b.decoded(objs)
		objs = withoutTenants(objs) // declarations sync reads, not objects of the cluster
		if err := r.normalizeScopes(objs, b.cm.Namespace); err != nil {
			return b.fail(meta.ReconciliationFailedReason, "revision %s: nothing applied: %v", rev, err)
		}
		list := make([]*unstructured.Unstructured, len(objs))
		for i, o := range objs {
			list[i] = o.obj
		}
		mgr.SetOwnerLabels(list, BundleInventoryName, b.cm.Namespace)
		if err := r.dryRunBundleObjects(ctx, objs); err != nil {
			return b.fail(meta.ReconciliationFailedReason, "revision %s: nothing applied: %v", rev, err)
		}
	}

	list := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		list[i] = o.obj
	}
	cs := ssa.NewChangeSet()
	if len(list) > 0 {
		opts := ssa.DefaultApplyOptions()
		opts.WaitTimeout = defaultTimeout
		applied, err := mgr.ApplyAllStaged(ctx, list, opts)
		if applied != nil {
			cs = applied
		}
		if err != nil {
			// Keep tracking what was applied before and what this attempt applied.
			if _, werr := b.writeInventory(ctx, mergeInventories(old, inventoryOf(cs)), false); werr != nil {
				b.log.Error("inventory not written", "err", werr)
			}
			return b.fail(meta.ReconciliationFailedReason, "revision %s: %v", b.revision, err)
		}
	}
	applied := inventoryOf(cs)
	stale, err := staleObjects(old, applied)
	if err != nil {
		return b.fail(meta.ReconciliationFailedReason, "prune: %v", err)
	}
	// Never prune the namespace that holds the inventory: that would delete the inventory.
	keep := stale[:0]
	for _, o := range stale {
		if o.GroupVersionKind().Group == "" && o.GetKind() == "Namespace" && o.GetName() == b.cm.Namespace {
			b.log.Warn("not pruned: it holds the bundle-object inventory", "object", objectName(o))
			continue
		}
		keep = append(keep, o)
	}
	stale = keep
	pruned := 0
	if len(stale) > 0 {
		del := ssa.DefaultDeleteOptions()
		del.Inclusions = owner
		pcs, err := mgr.DeleteAll(ctx, stale, del)
		if pcs != nil {
			for _, e := range pcs.Entries {
				b.log.Info("pruned", "object", e.Subject, "action", string(e.Action))
				if e.Action == ssa.DeletedAction {
					pruned++
				}
			}
		}
		if err != nil {
			if _, werr := b.writeInventory(ctx, mergeInventories(old, applied), false); werr != nil {
				b.log.Error("inventory not written", "err", werr)
			}
			return b.fail(meta.ReconciliationFailedReason, "prune: %v", err)
		}
	}
	changed, err := b.writeInventory(ctx, applied, true)
	if err != nil {
		return b.fail(meta.ReconciliationFailedReason, "inventory configmap %s/%s: %v", b.cm.Namespace, b.cm.Name, err)
	}
	created, configured := changeCounts(cs)
	note := fmt.Sprintf("Applied bundle %d: %d created, %d configured, %d pruned", b.rec.Sequence, created, configured, pruned)
	if b.item != nil {
		note = fmt.Sprintf("Applied bundle %d item %s revision %s: %d created, %d configured, %d pruned", b.rec.Sequence, b.item.Name, b.revision, created, configured, pruned)
	}
	b.log.Info("bundle objects applied", "revision", b.revision, "objects", len(list), "created", created, "configured", configured, "pruned", pruned)
	if changed || created+configured+pruned > 0 {
		r.recordEvent(b.cm, outcome{ready: true, reason: meta.ReconciliationSucceededReason, message: note})
	}
	return nil
}

// readClusterLayer reads the cluster item's manifest and its one layer, bounded and verified;
// it returns the layer and its digest (the item's revision).
func readClusterLayer(ctx context.Context, c *cache.Snapshot, item *cache.RecordItem) ([]byte, string, error) {
	if err := bundle.CheckClusterRoot(item.Root); err != nil {
		return nil, "", err
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, c, item.Root, &m); err != nil {
		return nil, "", fmt.Errorf("manifest: %w", err)
	}
	l, err := bundle.ClusterLayer(item.Root, m)
	if err != nil {
		return nil, "", err
	}
	data, err := c.ReadAll(ctx, l, bundle.MaxClusterManifestsSize)
	if err != nil {
		return nil, "", fmt.Errorf("layer: %w", err)
	}
	return data, string(l.Digest), nil
}

// normalizeScopes checks each object's scope with the API server's REST mapping (or the
// CustomResourceDefinition of the set that defines its kind): a namespaced object must name its
// namespace; a cluster-scoped one loses a namespace it names, as kubectl does. Objects whose
// kind is not known either way are left to the dry-run, which names them. The inventory
// ConfigMap itself (in namespace invNS) is refused: the reconciler writes it.
func (r *Reconciler) normalizeScopes(objs []clusterObject, invNS string) error {
	crdScopes := map[schema.GroupKind]string{}
	for _, o := range objs {
		gvk := o.obj.GroupVersionKind()
		if gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition" {
			group, _, _ := unstructured.NestedString(o.obj.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.obj.Object, "spec", "names", "kind")
			scope, _, _ := unstructured.NestedString(o.obj.Object, "spec", "scope")
			crdScopes[schema.GroupKind{Group: group, Kind: kind}] = scope
		}
	}
	var problems []string
	seen := map[string]string{}
	for _, o := range objs {
		gvk := o.obj.GroupVersionKind()
		namespaced := false
		if m, err := r.client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			namespaced = m.Scope.Name() == apimeta.RESTScopeNameNamespace
		} else if scope, ok := crdScopes[gvk.GroupKind()]; ok {
			namespaced = scope == "Namespaced"
		} else {
			continue
		}
		switch {
		case namespaced && o.obj.GetNamespace() == "":
			problems = append(problems, o.where()+": namespaced, but metadata.namespace is not set")
			continue
		case !namespaced && o.obj.GetNamespace() != "":
			o.obj.SetNamespace("")
		}
		if gvk.Group == "" && gvk.Kind == "ConfigMap" && o.obj.GetNamespace() == invNS && o.obj.GetName() == BundleInventoryName {
			problems = append(problems, o.where()+": is the bundle-object inventory, which the reconciler writes")
			continue
		}
		id := clusterObjectID(o.obj)
		if first, ok := seen[id]; ok {
			problems = append(problems, fmt.Sprintf("%s: the same object as %s (a cluster-scoped kind has no namespace)", o.where(), first))
			continue
		}
		seen[id] = fmt.Sprintf("%s document %d", o.source, o.index)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// dryRunBundleObjects server-side applies every object with dry run and returns an error
// naming every one the API server refused (file, document, object) and why. As for a
// Kustomization, a namespaced object whose namespace is a Namespace of the set, and an object
// whose kind a CustomResourceDefinition of the set defines, may be refused here and are let
// through: the staged apply creates those first.
func (r *Reconciler) dryRunBundleObjects(ctx context.Context, objs []clusterObject) error {
	namespaces := map[string]bool{}
	kinds := map[schema.GroupKind]bool{}
	for _, o := range objs {
		gvk := o.obj.GroupVersionKind()
		switch {
		case gvk.Group == "" && gvk.Kind == "Namespace":
			namespaces[o.obj.GetName()] = true
		case gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition":
			group, _, _ := unstructured.NestedString(o.obj.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.obj.Object, "spec", "names", "kind")
			kinds[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	sorted := append([]clusterObject(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return ssa.SortableUnstructureds{sorted[i].obj, sorted[j].obj}.Less(0, 1)
	})
	var refused []string
	for _, o := range sorted {
		err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.obj.DeepCopy()), client.DryRunAll, client.ForceOwnership, client.FieldOwner(FieldManager))
		if err == nil {
			continue
		}
		if apierrors.IsNotFound(err) && o.obj.GetNamespace() != "" && namespaces[o.obj.GetNamespace()] {
			continue
		}
		if apimeta.IsNoMatchError(err) && kinds[o.obj.GroupVersionKind().GroupKind()] {
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("dry-run %s: %w", o.where(), err)
		}
		reason := strings.ToLower(string(apierrors.ReasonForError(err)))
		if reason == "" {
			reason = "refused"
		}
		refused = append(refused, fmt.Sprintf("%s: %s: %s", o.where(), reason, err.Error()))
	}
	if len(refused) > 0 {
		return fmt.Errorf("dry-run refused %s", strings.Join(refused, "; "))
	}
	return nil
}

// parseBundleInventory reads the inventory a ConfigMap records; an empty one for none.
func parseBundleInventory(cm *corev1.ConfigMap) (*kustomizev1.ResourceInventory, error) {
	inv := &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{}}
	raw := cm.Data[inventoryKeyInventory]
	if raw == "" {
		return inv, nil
	}
	if err := json.Unmarshal([]byte(raw), inv); err != nil {
		return nil, fmt.Errorf("%s: %v", inventoryKeyInventory, err)
	}
	if inv.Entries == nil {
		inv.Entries = []kustomizev1.ResourceRef{}
	}
	return inv, nil
}

// writeInventory records inv in the inventory ConfigMap and, after a successful application
// (success), the bundle sequence and the item revision. It writes only when something changed,
// and says whether it did.
func (b *bundleObjects) writeInventory(ctx context.Context, inv *kustomizev1.ResourceInventory, success bool) (bool, error) {
	before := b.cm.DeepCopy()
	if err := b.setInventory(inv, success); err != nil {
		return false, err
	}
	if equalData(before.Data, b.cm.Data) {
		return false, nil
	}
	return true, b.r.client.Update(ctx, b.cm)
}

func (b *bundleObjects) setInventory(inv *kustomizev1.ResourceInventory, success bool) error {
	raw, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	if b.cm.Data == nil {
		b.cm.Data = map[string]string{}
	}
	b.cm.Data[inventoryKeyInventory] = string(raw)
	if !success {
		return nil
	}
	b.cm.Data[inventoryKeySequence] = strconv.FormatUint(b.rec.Sequence, 10)
	if b.item != nil {
		b.cm.Data[inventoryKeyItem] = b.item.Name
		b.cm.Data[inventoryKeyRevision] = b.revision
	} else {
		delete(b.cm.Data, inventoryKeyItem)
		delete(b.cm.Data, inventoryKeyRevision)
	}
	return nil
}

func equalData(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

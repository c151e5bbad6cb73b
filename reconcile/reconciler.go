package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	ferryv1 "github.com/ferry-gitops/ferry/api/v1alpha1"
	"github.com/ferry-gitops/ferry/cache"
)

// FieldManager is the server-side apply field manager of everything the reconciler applies.
const FieldManager = "ferry"

// OwnerGroup prefixes the labels that mark an applied object as a Kustomization's:
// kustomize.ferry.dev/name and kustomize.ferry.dev/namespace. Pruning deletes only objects
// that carry them.
const OwnerGroup = "kustomize.ferry.dev"

// defaultTimeout bounds a reconciliation whose Kustomization sets neither timeout nor interval.
const defaultTimeout = 5 * time.Minute

// Options configure a Reconciler.
type Options struct {
	// Logger receives a line per reconciliation; nil discards.
	Logger *slog.Logger
}

// Reconciler reconciles the cluster's Kustomizations from a cache.
type Reconciler struct {
	client   client.Client
	manager  *ssa.ResourceManager
	cacheDir string
	log      *slog.Logger
}

// NewScheme returns a scheme with Kubernetes' built-in types and Ferry's.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := ferryv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// New returns a Reconciler for the cluster cfg reaches, reading sources from the cache in
// cacheDir (opened read-only at each reconciliation, so imports are picked up).
func New(cfg *rest.Config, cacheDir string, o Options) (*Reconciler, error) {
	s, err := NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	poller := polling.NewStatusPoller(c, c.RESTMapper(), polling.Options{})
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		client:   c,
		manager:  ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: OwnerGroup}),
		cacheDir: cacheDir,
		log:      log,
	}, nil
}

// Client returns the reconciler's Kubernetes client.
func (r *Reconciler) Client() client.Client { return r.client }

// pass is what one reconciliation sees: one cache record and every Kustomization.
type pass struct {
	cache   *cache.Cache
	record  *cache.Record
	byKey   map[types.NamespacedName]*ferryv1.Kustomization
	order   []*ferryv1.Kustomization
	cycles  map[types.NamespacedName]string
	sources map[string]*source // by item name
}

func (r *Reconciler) newPass(ctx context.Context) (*pass, error) {
	c, err := cache.OpenReader(r.cacheDir)
	if err != nil {
		return nil, err
	}
	rec, err := c.Current()
	if err != nil {
		return nil, err
	}
	var list ferryv1.KustomizationList
	if err := r.client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list kustomizations: %w", err)
	}
	p := &pass{cache: c, record: rec, byKey: map[types.NamespacedName]*ferryv1.Kustomization{}, sources: map[string]*source{}}
	var ks []*ferryv1.Kustomization
	for i := range list.Items {
		k := &list.Items[i]
		ks = append(ks, k)
		p.byKey[types.NamespacedName{Namespace: k.Namespace, Name: k.Name}] = k
	}
	p.order, p.cycles = plan(ks)
	return p, nil
}

// source returns the named Git item of the pass's record, read once per pass.
func (p *pass) source(ctx context.Context, name string) (*source, error) {
	if s, ok := p.sources[name]; ok {
		return s, nil
	}
	s, err := findSource(ctx, p.cache, p.record, name)
	if err != nil {
		return nil, err
	}
	p.sources[name] = s
	return s, nil
}

// ReconcileAll reconciles every Kustomization of the cluster, each after its dependencies,
// from the cache's current bundle. It returns the failures joined, each naming its
// Kustomization; every outcome is also in the Kustomization's status.
func (r *Reconciler) ReconcileAll(ctx context.Context) error {
	p, err := r.newPass(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range p.order {
		if err := r.reconcile(ctx, p, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile reconciles one Kustomization; its dependencies must already be Ready.
func (r *Reconciler) Reconcile(ctx context.Context, key types.NamespacedName) error {
	p, err := r.newPass(ctx)
	if err != nil {
		return err
	}
	k, ok := p.byKey[key]
	if !ok {
		return fmt.Errorf("kustomization %s: not found", key)
	}
	return r.reconcile(ctx, p, k)
}

// outcome is the Ready condition a reconciliation ends with.
type outcome struct {
	ready   bool
	reason  string
	message string
}

func (o outcome) err(k *ferryv1.Kustomization) error {
	if o.ready {
		return nil
	}
	return fmt.Errorf("kustomization %s/%s: %s: %s", k.Namespace, k.Name, o.reason, o.message)
}

func (r *Reconciler) reconcile(ctx context.Context, p *pass, k *ferryv1.Kustomization) error {
	name := k.Namespace + "/" + k.Name
	log := r.log.With("kustomization", name)
	if k.Spec.Suspend {
		log.Info("suspended, skipped")
		return nil
	}
	if !k.DeletionTimestamp.IsZero() {
		return nil
	}
	orig := k.DeepCopy()
	out := r.run(ctx, p, k, log)
	k.Status.ObservedGeneration = k.Generation
	status := metav1.ConditionFalse
	if out.ready {
		status = metav1.ConditionTrue
	}
	apimeta.SetStatusCondition(&k.Status.Conditions, metav1.Condition{
		Type:               ferryv1.ReadyCondition,
		Status:             status,
		ObservedGeneration: k.Generation,
		Reason:             out.reason,
		Message:            truncate(out.message, 32000),
	})
	if err := r.client.Status().Patch(ctx, k, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("kustomization %s: write status: %w", name, err)
	}
	if out.ready {
		log.Info("applied", "revision", k.Status.LastAppliedRevision)
	} else {
		log.Warn("not ready", "reason", out.reason, "message", out.message)
	}
	return out.err(k)
}

// run does one reconciliation and updates k's status fields but its Ready condition.
func (r *Reconciler) run(ctx context.Context, p *pass, k *ferryv1.Kustomization, log *slog.Logger) outcome {
	key := types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
	if c, ok := p.cycles[key]; ok {
		return outcome{reason: ferryv1.DependencyCycleReason, message: "dependency cycle: " + c}
	}
	if k.Spec.SourceRef.Kind != ferryv1.GitSourceKind {
		return outcome{reason: ferryv1.SourceNotFoundReason, message: fmt.Sprintf("source kind %q is not supported (only %s)", k.Spec.SourceRef.Kind, ferryv1.GitSourceKind)}
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

	timeout := defaultTimeout
	if k.Spec.Timeout != nil && k.Spec.Timeout.Duration > 0 {
		timeout = k.Spec.Timeout.Duration
	} else if k.Spec.Interval.Duration > 0 {
		timeout = k.Spec.Interval.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fsys := filesys.MakeFsInMemory()
	if err := src.extract(ctx, p.cache, fsys, srcRoot); err != nil {
		return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: extract %s: %v", src.commit, k.Spec.SourceRef.Name, err)}
	}
	objs, err := build(fsys, k.Spec.Path, k.Spec.TargetNamespace)
	if err != nil {
		return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
	}
	r.manager.SetOwnerLabels(objs, k.Name, k.Namespace)

	opts := ssa.DefaultApplyOptions()
	opts.WaitTimeout = timeout
	cs, applyErr := r.manager.ApplyAllStaged(ctx, objs, opts)
	applied := inventoryOf(cs)
	old := k.Status.Inventory
	if applyErr != nil {
		// Keep tracking what was applied before and what this attempt applied.
		k.Status.Inventory = mergeInventories(old, applied)
		return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, applyErr)}
	}
	k.Status.Inventory = applied
	if k.Spec.Prune {
		stale, err := staleObjects(old, applied)
		if err != nil {
			return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: prune: %v", src.commit, err)}
		}
		if len(stale) > 0 {
			del := ssa.DefaultDeleteOptions()
			del.Inclusions = r.manager.GetOwnerLabels(k.Name, k.Namespace)
			pcs, err := r.manager.DeleteAll(ctx, stale, del)
			if err != nil {
				k.Status.Inventory = mergeInventories(old, applied)
				return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: prune: %v", src.commit, err)}
			}
			for _, e := range pcs.Entries {
				log.Info("pruned", "object", e.Subject, "action", string(e.Action))
			}
		}
	}
	if k.Spec.Wait {
		wo := ssa.WaitOptions{Interval: 2 * time.Second, Timeout: timeout}
		if err := r.manager.WaitForSetWithContext(ctx, cs.ToObjMetadataSet(), wo); err != nil {
			return outcome{reason: ferryv1.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
		}
	}
	k.Status.LastAppliedRevision = src.commit
	return outcome{ready: true, reason: ferryv1.ReconciliationSucceededReason, message: "Applied revision: " + src.commit}
}

// dependenciesReady returns "" when every dependency of k is Ready at its current revision,
// and otherwise says which is not.
func (r *Reconciler) dependenciesReady(ctx context.Context, p *pass, k *ferryv1.Kustomization) string {
	for _, d := range dependencies(k) {
		dep, ok := p.byKey[d]
		if !ok {
			var got ferryv1.Kustomization
			if err := r.client.Get(ctx, d, &got); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Sprintf("dependency %s not found", d)
				}
				return fmt.Sprintf("dependency %s: %v", d, err)
			}
			dep = &got
		}
		ready := apimeta.FindStatusCondition(dep.Status.Conditions, ferryv1.ReadyCondition)
		if ready == nil || ready.Status != metav1.ConditionTrue || dep.Status.ObservedGeneration != dep.Generation {
			return fmt.Sprintf("dependency %s is not ready", d)
		}
		if dep.Spec.SourceRef.Kind == ferryv1.GitSourceKind {
			if src, err := p.source(ctx, dep.Spec.SourceRef.Name); err == nil && dep.Status.LastAppliedRevision != src.commit {
				return fmt.Sprintf("dependency %s is at revision %q, not yet at %s", d, dep.Status.LastAppliedRevision, src.commit)
			}
		}
	}
	return ""
}

// inventoryOf lists a change set's objects as inventory entries, sorted by id.
func inventoryOf(cs *ssa.ChangeSet) *ferryv1.ResourceInventory {
	inv := &ferryv1.ResourceInventory{Entries: []ferryv1.ResourceRef{}}
	if cs == nil {
		return inv
	}
	for _, e := range cs.Entries {
		inv.Entries = append(inv.Entries, ferryv1.ResourceRef{ID: e.ObjMetadata.String(), Version: e.GroupVersion})
	}
	sort.Slice(inv.Entries, func(i, j int) bool { return inv.Entries[i].ID < inv.Entries[j].ID })
	return inv
}

// mergeInventories returns the union of two inventories; b's version wins.
func mergeInventories(a, b *ferryv1.ResourceInventory) *ferryv1.ResourceInventory {
	byID := map[string]string{}
	if a != nil {
		for _, e := range a.Entries {
			byID[e.ID] = e.Version
		}
	}
	for _, e := range b.Entries {
		byID[e.ID] = e.Version
	}
	out := &ferryv1.ResourceInventory{Entries: []ferryv1.ResourceRef{}}
	for id, v := range byID {
		out.Entries = append(out.Entries, ferryv1.ResourceRef{ID: id, Version: v})
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].ID < out.Entries[j].ID })
	return out
}

// staleObjects returns the objects of old that current lacks, as objects to delete.
func staleObjects(old, current *ferryv1.ResourceInventory) ([]*unstructured.Unstructured, error) {
	if old == nil {
		return nil, nil
	}
	keep := map[string]bool{}
	for _, e := range current.Entries {
		keep[e.ID] = true
	}
	var out []*unstructured.Unstructured
	for _, e := range old.Entries {
		if keep[e.ID] {
			continue
		}
		m, err := object.ParseObjMetadata(e.ID)
		if err != nil {
			return nil, fmt.Errorf("inventory entry %q: %w", e.ID, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(m.GroupKind.WithVersion(e.Version))
		u.SetNamespace(m.Namespace)
		u.SetName(m.Name)
		out = append(out, u)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

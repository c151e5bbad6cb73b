package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
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
	"k8s.io/client-go/tools/events"
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
	// OnResult, when set, is called after each reconciliation of an object (the agent turns
	// these into metrics).
	OnResult func(Result)
	// Namespace holds the inventory ConfigMap of the bundle's own cluster objects (created if
	// missing); default DefaultNamespace ("ferry-system").
	Namespace string
	// Cache gives each reconciliation run a snapshot of the cache's current bundle, which the
	// whole run reads (the bundle's objects, then every Kustomization and HelmRelease); a
	// *cache.Cache does. Nil: the cache in New's cacheDir, opened read-only.
	Cache Snapshots
}

// Snapshots gives out snapshots of a cache's current bundle, as *cache.Cache does.
type Snapshots interface {
	Snapshot() (*cache.Snapshot, error)
}

// Result is the outcome of one reconciliation of one object.
type Result struct {
	// Kind is KustomizationKind or HelmReleaseKind.
	Kind, Namespace, Name string
	// Duration is how long the reconciliation took.
	Duration time.Duration
	// Ready, Reason and Message are the Ready condition it ended with.
	Ready           bool
	Reason, Message string
	// Revision is the last applied revision after it.
	Revision string
	// DriftCorrected counts objects that were changed in the cluster although their desired
	// state was unchanged, and were put back.
	DriftCorrected int
	// Deleted is set when the object was being deleted and its finalizer was removed (after
	// its inventory was pruned or its release uninstalled, when that applies): it is gone.
	// Reason is then ferry.dev's Finalized (or ServiceAccountNotFound when nothing could be
	// deleted) and Message says what was done.
	Deleted bool
}

// Reconciler reconciles the cluster's Kustomizations and HelmReleases from a cache.
type Reconciler struct {
	client   client.Client
	restCfg  *rest.Config
	manager  *ssa.ResourceManager
	cacheDir string
	snaps    Snapshots // Options.Cache, or the cache in cacheDir once opened
	log      *slog.Logger
	onResult func(Result)
	bundleNS string // Options.Namespace
	// broadcaster and events record an Event for each reconciliation's outcome.
	broadcaster events.EventBroadcaster
	events      events.EventRecorder

	// mu guards snaps, and lastRun: when this Reconciler last reconciled each object
	// (ReconcileAll reconciles an object whose interval has passed since).
	mu      sync.Mutex
	lastRun map[objKey]time.Time
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

// New returns a Reconciler for the cluster cfg reaches, reading sources from a snapshot of the
// cache's current bundle taken at each reconciliation run, so imports are picked up: from
// Options.Cache, or else from the cache in cacheDir (opened read-only).
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
	broadcaster, recorder, err := newEventRecorder(cfg, s)
	if err != nil {
		return nil, fmt.Errorf("event recorder: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		client:   c,
		restCfg:  rest.CopyConfig(cfg),
		manager:  ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: OwnerGroup}),
		cacheDir: cacheDir,
		snaps:    o.Cache,
		log:      log,
		onResult: o.OnResult,
		bundleNS: o.Namespace,

		broadcaster: broadcaster,
		events:      recorder,

		lastRun: map[objKey]time.Time{},
	}, nil
}

// Client returns the reconciler's Kubernetes client.
func (r *Reconciler) Client() client.Client { return r.client }

// pass is what one reconciliation sees: one snapshot of the cache (and its record), every
// Kustomization and every HelmRelease.
type pass struct {
	cache        *cache.Snapshot
	record       *cache.Record
	byKey        map[types.NamespacedName]*ferryv1.Kustomization
	helmReleases map[types.NamespacedName]*ferryv1.HelmRelease
	order        []objKey
	cycles       map[objKey]string
	sources      map[string]*source    // by item name
	charts       map[string]*chartItem // by item name
	// force makes every object due; ran holds the objects reconciled so far in the pass.
	force bool
	ran   map[objKey]bool
}

// snapshot takes a snapshot of the cache's current bundle for one reconciliation run.
func (r *Reconciler) snapshot() (*cache.Snapshot, error) {
	r.mu.Lock()
	if r.snaps == nil {
		c, err := cache.OpenReader(r.cacheDir)
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		r.snaps = c
	}
	snaps := r.snaps
	r.mu.Unlock()
	return snaps.Snapshot()
}

// newPass starts a pass over a new snapshot of the cache.
func (r *Reconciler) newPass(ctx context.Context) (*pass, error) {
	snap, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	return r.newPassOf(ctx, snap)
}

// newPassOf starts a pass over the snapshot c.
func (r *Reconciler) newPassOf(ctx context.Context, c *cache.Snapshot) (*pass, error) {
	rec := c.Record()
	var list ferryv1.KustomizationList
	if err := r.client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list kustomizations: %w", err)
	}
	var hrs ferryv1.HelmReleaseList
	if err := r.client.List(ctx, &hrs); err != nil {
		return nil, fmt.Errorf("list helmreleases: %w", err)
	}
	p := &pass{
		cache: c, record: rec,
		byKey:        map[types.NamespacedName]*ferryv1.Kustomization{},
		helmReleases: map[types.NamespacedName]*ferryv1.HelmRelease{},
		sources:      map[string]*source{},
		charts:       map[string]*chartItem{},
		ran:          map[objKey]bool{},
	}
	deps := map[objKey][]objKey{}
	for i := range list.Items {
		k := &list.Items[i]
		key := kustomizationKey(k)
		p.byKey[key.NamespacedName] = k
		deps[key] = dependencyKeys(ferryv1.KustomizationKind, k.Namespace, k.Spec.DependsOn)
	}
	for i := range hrs.Items {
		h := &hrs.Items[i]
		key := helmReleaseKey(h)
		p.helmReleases[key.NamespacedName] = h
		deps[key] = dependencyKeys(ferryv1.HelmReleaseKind, h.Namespace, h.Spec.DependsOn)
	}
	p.order, p.cycles = planGraph(deps)
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

// ReconcileAll reconciles the Kustomizations and HelmReleases of the cluster that are due
// (see docs/reconcile.md, "Passes": a new generation, a new source revision, not Ready, a
// reconcile.ferry.dev/requestedAt request, a dependency reconciled in this pass, or interval
// elapsed since this Reconciler last reconciled it), each after its dependencies, from the
// cache's current bundle. Objects being deleted are finalized first, dependents before their
// dependencies. It returns the failures joined, each naming its object; every outcome is also
// in the object's status.
func (r *Reconciler) ReconcileAll(ctx context.Context) error {
	return r.reconcileAll(ctx, false)
}

// ReconcileAllForce is ReconcileAll with every object due: everything is reconciled, as a
// one-shot run (sync reconcile) wants.
func (r *Reconciler) ReconcileAllForce(ctx context.Context) error {
	return r.reconcileAll(ctx, true)
}

func (r *Reconciler) reconcileAll(ctx context.Context, force bool) error {
	snap, err := r.snapshot()
	if err != nil {
		return err
	}
	if err := r.applyBundleObjects(ctx, snap); err != nil {
		return err
	}
	p, err := r.newPassOf(ctx, snap)
	if err != nil {
		return err
	}
	p.force = force
	var errs []error
	// Deleted objects first, dependents before their dependencies.
	for i := len(p.order) - 1; i >= 0; i-- {
		key := p.order[i]
		if !p.deleted(key) {
			continue
		}
		switch key.Kind {
		case ferryv1.KustomizationKind:
			err = r.reconcile(ctx, p, p.byKey[key.NamespacedName])
		case ferryv1.HelmReleaseKind:
			err = r.reconcileHelmRelease(ctx, p, p.helmReleases[key.NamespacedName])
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, key := range p.order {
		due, why := r.due(ctx, p, key)
		if !due {
			if !p.deleted(key) {
				r.log.Debug("not due, skipped", "kind", key.Kind, "object", key.NamespacedName.String())
			}
			continue
		}
		r.log.Debug("due", "kind", key.Kind, "object", key.NamespacedName.String(), "why", why)
		switch key.Kind {
		case ferryv1.KustomizationKind:
			err = r.reconcile(ctx, p, p.byKey[key.NamespacedName])
		case ferryv1.HelmReleaseKind:
			err = r.reconcileHelmRelease(ctx, p, p.helmReleases[key.NamespacedName])
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reconcile reconciles one Kustomization; its dependencies must already be Ready.
// ReconcileHelmRelease does the same for a HelmRelease.
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
	// event, when set, is the note of the success Event in place of message.
	event string
	// drift counts objects put back although their desired state was unchanged.
	drift int
}

// report passes one reconciliation's outcome to Options.OnResult.
func (r *Reconciler) report(kind string, obj client.Object, revision string, start time.Time, out outcome) {
	if r.onResult == nil {
		return
	}
	r.onResult(Result{
		Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(),
		Duration: time.Since(start),
		Ready:    out.ready, Reason: out.reason, Message: out.message,
		Revision:       revision,
		DriftCorrected: out.drift,
	})
}

func (r *Reconciler) reconcile(ctx context.Context, p *pass, k *ferryv1.Kustomization) error {
	return r.reconcileObject(ctx, p, kustomizationKey(k), k, k.Spec.Suspend,
		statusRefs{&k.Status.Conditions, &k.Status.ObservedGeneration, &k.Status.LastHandledReconcileAt, &k.Status.LastAppliedRevision},
		func(log *slog.Logger) error { return r.finalizeKustomization(ctx, k, log) },
		func(log *slog.Logger) outcome { return r.run(ctx, p, k, log) })
}

// statusRefs points at the status fields Kustomizations and HelmReleases share.
type statusRefs struct {
	conditions             *[]metav1.Condition
	observedGeneration     *int64
	lastHandledReconcileAt *string
	lastAppliedRevision    *string
}

// reconcileObject is what reconciling a Kustomization and a HelmRelease have in common: finalize
// it when deleted, skip it when suspended, add the finalizer, run, and write the outcome as its
// status (Ready, observedGeneration, lastHandledReconcileAt), an Event, a log line and a Result.
func (r *Reconciler) reconcileObject(ctx context.Context, p *pass, key objKey, obj client.Object, suspended bool, st statusRefs,
	finalize func(*slog.Logger) error, run func(*slog.Logger) outcome) error {
	kind := strings.ToLower(key.Kind)
	name := obj.GetNamespace() + "/" + obj.GetName()
	log := r.log.With(kind, name)
	if !obj.GetDeletionTimestamp().IsZero() {
		return finalize(log)
	}
	if suspended {
		log.Info("suspended, skipped")
		return nil
	}
	if err := r.addFinalizer(ctx, obj); err != nil {
		return fmt.Errorf("%s %s: add finalizer: %w", kind, name, err)
	}
	defer r.ran(p, key)
	orig := obj.DeepCopyObject().(client.Object)
	start := time.Now()
	out := run(log)
	r.report(key.Kind, obj, *st.lastAppliedRevision, start, out)
	*st.observedGeneration = obj.GetGeneration()
	if v, ok := requestedAt(obj); ok {
		*st.lastHandledReconcileAt = v
	}
	status := metav1.ConditionFalse
	if out.ready {
		status = metav1.ConditionTrue
	}
	apimeta.SetStatusCondition(st.conditions, metav1.Condition{
		Type:               ferryv1.ReadyCondition,
		Status:             status,
		ObservedGeneration: obj.GetGeneration(),
		Reason:             out.reason,
		Message:            truncate(out.message, 32000),
	})
	r.recordEvent(obj, out)
	if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("%s %s: write status: %w", kind, name, err)
	}
	if out.ready {
		log.Info("applied", "revision", *st.lastAppliedRevision)
		return nil
	}
	log.Warn("not ready", "reason", out.reason, "message", out.message)
	return fmt.Errorf("%s %s: %s: %s", kind, name, out.reason, out.message)
}

// run does one reconciliation and updates k's status fields but its Ready condition.
func (r *Reconciler) run(ctx context.Context, p *pass, k *ferryv1.Kustomization, log *slog.Logger) outcome {
	if c, ok := p.cycles[kustomizationKey(k)]; ok {
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
	if out, ok := r.serviceAccountExists(ctx, k); !ok {
		return out
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
	var vars map[string]string
	if k.Spec.PostBuild != nil {
		if vars, err = r.substitutionVars(ctx, k); err != nil {
			return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: postBuild: %v", src.commit, err)}
		}
	}
	objs, err := build(fsys, k.Spec.Path, overlayOf(k), vars)
	if err != nil {
		return outcome{reason: ferryv1.BuildFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
	}
	r.manager.SetOwnerLabels(objs, k.Name, k.Namespace)

	mgr, err := r.managerFor(k)
	if err != nil {
		return outcome{reason: ferryv1.ApplyFailedReason, message: fmt.Sprintf("revision %s: %v", src.commit, err)}
	}
	if err := r.dryRun(ctx, mgr.Client(), k, objs); err != nil {
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
		if msg := r.healthCheck(ctx, mgr, k, timeout); msg != "" {
			return outcome{reason: ferryv1.HealthCheckFailedReason, message: fmt.Sprintf("revision %s: %s", src.commit, msg)}
		}
	}
	unchanged := k.Status.LastAppliedRevision == src.commit && k.Status.ObservedGeneration == k.Generation
	k.Status.LastAppliedRevision = src.commit
	created, configured := 0, 0
	for _, e := range cs.Entries {
		switch e.Action {
		case ssa.CreatedAction:
			created++
		case ssa.ConfiguredAction:
			configured++
		}
	}
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

// dependenciesReady returns "" when every dependency of k is Ready at its current revision,
// and otherwise says which is not.
func (r *Reconciler) dependenciesReady(ctx context.Context, p *pass, k *ferryv1.Kustomization) string {
	for _, d := range dependencyKeys(ferryv1.KustomizationKind, k.Namespace, k.Spec.DependsOn) {
		if msg := r.dependencyReady(ctx, p, d, ferryv1.KustomizationKind); msg != "" {
			return msg
		}
	}
	return ""
}

// dependencyReady returns "" when the Kustomization or HelmRelease d is Ready at its current
// generation and at the current revision of its source (the commit of its Git item, or the
// version of its chart item), and otherwise says why not. selfKind is the dependent's kind:
// d is named with its kind when that differs.
func (r *Reconciler) dependencyReady(ctx context.Context, p *pass, d objKey, selfKind string) string {
	label := d.label(selfKind)
	var (
		obj     client.Object
		conds   *[]metav1.Condition
		applied *string
		current func() (string, bool)
	)
	switch d.Kind {
	case ferryv1.KustomizationKind:
		dep, ok := p.byKey[d.NamespacedName]
		if !ok {
			dep = &ferryv1.Kustomization{}
		}
		obj, conds, applied = dep, &dep.Status.Conditions, &dep.Status.LastAppliedRevision
		current = func() (string, bool) {
			if dep.Spec.SourceRef.Kind != ferryv1.GitSourceKind {
				return "", false
			}
			src, err := p.source(ctx, dep.Spec.SourceRef.Name)
			if err != nil {
				return "", false
			}
			return src.commit, true
		}
		if ok {
			break
		}
		if msg := r.getDependency(ctx, d, label, dep); msg != "" {
			return msg
		}
	case ferryv1.HelmReleaseKind:
		dep, ok := p.helmReleases[d.NamespacedName]
		if !ok {
			dep = &ferryv1.HelmRelease{}
		}
		obj, conds, applied = dep, &dep.Status.Conditions, &dep.Status.LastAppliedRevision
		current = func() (string, bool) {
			ch, err := p.chart(ctx, dep.Spec.Chart.Name)
			if err != nil {
				return "", false
			}
			return ch.version, true
		}
		if ok {
			break
		}
		if msg := r.getDependency(ctx, d, label, dep); msg != "" {
			return msg
		}
	default:
		return fmt.Sprintf("dependency %s: kind %q is not supported", label, d.Kind)
	}
	ready := apimeta.FindStatusCondition(*conds, ferryv1.ReadyCondition)
	if ready == nil || ready.Status != metav1.ConditionTrue || observedGeneration(obj) != obj.GetGeneration() {
		return fmt.Sprintf("dependency %s is not ready", label)
	}
	if rev, ok := current(); ok && *applied != rev {
		return fmt.Sprintf("dependency %s is at revision %q, not yet at %s", label, *applied, rev)
	}
	return ""
}

// getDependency reads a dependency the pass did not list into obj; it returns "" on success.
func (r *Reconciler) getDependency(ctx context.Context, d objKey, label string, obj client.Object) string {
	if err := r.client.Get(ctx, d.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("dependency %s not found", label)
		}
		return fmt.Sprintf("dependency %s: %v", label, err)
	}
	return ""
}

// observedGeneration returns the status.observedGeneration of a Kustomization or HelmRelease.
func observedGeneration(obj client.Object) int64 {
	switch o := obj.(type) {
	case *ferryv1.Kustomization:
		return o.Status.ObservedGeneration
	case *ferryv1.HelmRelease:
		return o.Status.ObservedGeneration
	}
	return -1
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

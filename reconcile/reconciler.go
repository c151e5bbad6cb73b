package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/cache"
)

// FieldManager is the server-side apply field manager of everything the reconciler applies.
const FieldManager = "ferry"

// OwnerGroup prefixes the labels that mark an applied object as a Kustomization's, Flux's own:
// kustomize.toolkit.fluxcd.io/name and kustomize.toolkit.fluxcd.io/namespace. Pruning deletes
// only objects that carry them.
const OwnerGroup = "kustomize.toolkit.fluxcd.io"

// DefaultConcurrent is Options.Concurrent's default, as Flux's controllers' --concurrent.
const DefaultConcurrent = 4

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
	// Concurrent is how many Kustomizations and HelmReleases a pass reconciles at once, each
	// after its dependsOn (Flux's --concurrent); default DefaultConcurrent. 1 reconciles them
	// one by one in dependency order.
	Concurrent int
	// DetachAfter is how long ReconcileAll waits for one Kustomization or HelmRelease before
	// the pass goes on without it; it goes on running, later passes skip it until it is done
	// (Idle says when none is left). Default DefaultDetachAfter; negative: wait for each.
	// ReconcileAllForce always waits.
	DetachAfter time.Duration
	// Tenancy, when set, locks a cluster shared by tenants down (docs/tenancy.md).
	Tenancy *Tenancy
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
	sched    *scheduler
	tenancy  *Tenancy
	detach   time.Duration // Options.DetachAfter
	// broadcaster and events record an Event for each reconciliation's outcome.
	broadcaster events.EventBroadcaster
	events      events.EventRecorder

	// mu guards snaps, and lastRun: when this Reconciler last reconciled each object
	// (ReconcileAll reconciles an object whose interval has passed since).
	mu      sync.Mutex
	lastRun map[objKey]time.Time
	// targets holds the clients of remote clusters, per kubeconfig Secret (guarded by mu).
	targets map[types.NamespacedName]cachedTarget
}

// NewScheme returns a scheme with Kubernetes' built-in types and the Flux kinds sync reconciles.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := api.AddToScheme(s); err != nil {
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
	workers := o.Concurrent
	if workers == 0 {
		workers = DefaultConcurrent
	}
	detach := o.DetachAfter
	switch {
	case detach == 0:
		detach = DefaultDetachAfter
	case detach < 0:
		detach = 0
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
		sched:    newScheduler(workers),
		tenancy:  o.Tenancy,
		detach:   detach,

		broadcaster: broadcaster,
		events:      recorder,

		lastRun: map[objKey]time.Time{},
	}, nil
}

// Client returns the reconciler's Kubernetes client.
func (r *Reconciler) Client() client.Client { return r.client }

// pass is what one reconciliation sees: one snapshot of the cache (and its record), and every object of every kind
// (Kustomizations, HelmReleases).
type pass struct {
	cache   *cache.Snapshot
	record  *cache.Record
	objects map[objKey]subject
	order   []objKey
	cycles  map[objKey]string
	// resolved holds each source object's resolution, gits the carried Git items' configs.
	resolved map[objKey]resolution
	gits     []gitItem
	// force makes every object due; ran holds the objects reconciled so far in the pass.
	force bool
	ran   map[objKey]bool
	// decls are the cluster item's declarations (declarations), read once.
	decls *clusterDecls
	// mu guards resolved, gits, ran and decls: a pass reconciles several objects at once.
	mu sync.Mutex
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
	p := &pass{
		cache: c, record: rec,
		objects:  map[objKey]subject{},
		resolved: map[objKey]resolution{},
		ran:      map[objKey]bool{},
	}
	deps := map[objKey][]objKey{}
	for _, k := range kinds {
		objs, err := k.list(ctx, r.client)
		if err != nil {
			return nil, fmt.Errorf("list %ss: %w", k.label, err)
		}
		for _, o := range objs {
			key := keyOf(o)
			p.objects[key] = o
			deps[key] = dependenciesOf(o)
		}
	}
	p.order, p.cycles = planGraph(deps)
	return p, nil
}

// ReconcileAll reconciles the Kustomizations and HelmReleases of the cluster that are due
// (see docs/reconcile.md, "Passes": a new generation, a new source revision, not Ready, a
// reconcile.fluxcd.io/requestedAt request, a dependency reconciled in this pass, or interval
// elapsed since this Reconciler last reconciled it), each after its dependencies, from the
// cache's current bundle. Objects being deleted are finalized first, dependents before their
// dependencies. It returns the failures joined, each naming its object; every outcome is also
// in the object's status.
func (r *Reconciler) ReconcileAll(ctx context.Context) error {
	return r.reconcileAll(ctx, false)
}

// Idle reports whether no Kustomization or HelmRelease is still running from a pass that
// ended without it (Options.DetachAfter): whoever drops bundles from the cache waits for it.
func (r *Reconciler) Idle() bool { return r.sched.idle() }

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
	var decls *clusterDecls
	if err := r.applyBundleObjects(ctx, snap, func(objs []clusterObject) { decls = declarationsOf(objs) }); err != nil {
		return err
	}
	p, err := r.newPassOf(ctx, snap)
	if err != nil {
		return err
	}
	p.decls = decls
	p.force = force
	var errs []error
	// Deleted objects first, dependents before their dependencies.
	for i := len(p.order) - 1; i >= 0; i-- {
		key := p.order[i]
		if !p.deleted(key) || r.sched.busy(key) {
			continue
		}
		if err := r.runObject(ctx, p, p.objects[key]); err != nil {
			errs = append(errs, err)
		}
	}
	order := p.order
	run := func(key objKey) error {
		if r.sched.busy(key) {
			r.log.Debug("still running from an earlier pass, skipped", "kind", key.Kind, "object", key.NamespacedName.String())
			return nil
		}
		due, why := r.due(ctx, p, key)
		if !due {
			if !p.deleted(key) {
				r.log.Debug("not due, skipped", "kind", key.Kind, "object", key.NamespacedName.String())
			}
			return nil
		}
		r.log.Debug("due", "kind", key.Kind, "object", key.NamespacedName.String(), "why", why)
		return r.runObject(ctx, p, p.objects[key])
	}
	// Sources one by one (they read only the cache); then Kustomizations and HelmReleases,
	// several at once, each once its dependencies are done.
	var rest []objKey
	for _, key := range order {
		if !kindNamed(key.Kind).source {
			rest = append(rest, key)
			continue
		}
		if err := run(key); err != nil {
			errs = append(errs, err)
		}
	}
	detach := r.detach
	if force {
		detach = 0
	}
	errs = append(errs, r.sched.run(rest, func(key objKey) []objKey { return dependenciesOf(p.objects[key]) }, detach, run)...)
	return errors.Join(errs...)
}

// Reconcile reconciles one Kustomization; its dependencies must already be Ready.
// ReconcileHelmRelease does the same for a HelmRelease.
func (r *Reconciler) Reconcile(ctx context.Context, key types.NamespacedName) error {
	return r.reconcileOne(ctx, objKey{Kind: kustomizev1.KustomizationKind, NamespacedName: key})
}

// reconcileOne reconciles the object named key in a pass of its own.
func (r *Reconciler) reconcileOne(ctx context.Context, key objKey) error {
	p, err := r.newPass(ctx)
	if err != nil {
		return err
	}
	o, ok := p.objects[key]
	if !ok {
		return fmt.Errorf("%s %s: not found", kindNamed(key.Kind).label, key.NamespacedName)
	}
	return r.runObject(ctx, p, o)
}

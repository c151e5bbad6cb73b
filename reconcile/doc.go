// Package reconcile is Ferry's cluster-side reconciler for Flux's own kinds (package api): the
// sources GitRepository, OCIRepository, HelmRepository and HelmChart
// (source.toolkit.fluxcd.io/v1), Kustomization (kustomize.toolkit.fluxcd.io/v1) and HelmRelease
// (helm.toolkit.fluxcd.io/v2). Nothing is fetched: a source is resolved to the item of the
// cache's current bundle carried from its upstream (URL and ref, chart and version; resolve.go)
// and reported as its artifact with Flux's revision strings (sources.go); a source not carried
// is Ready=False, reason SourceNotCarried. For a Kustomization it takes the tree its source
// resolves to, extracts it into memory, builds the Kustomization's path with kustomize (no
// remote bases, no plugins), applies the result with server-side apply (field manager "ferry"),
// prunes what the previous build applied and this one no longer holds, and writes the outcome
// to the status. For a HelmRelease it loads the chart its chart or chartRef resolves to, merges
// the values, and installs or upgrades the release with Helm's SDK, rolling a failed upgrade
// back when its remediation asks for it.
//
// The caller runs ReconcileAll often (every 30-60 s, and after each import); it reconciles the
// sources first, then the objects that are due (new generation or source revision, not Ready,
// a reconcile.fluxcd.io/requestedAt request, a dependency reconciled, or interval elapsed), each
// after its dependsOn, and finalizes deleted ones (pruning a Kustomization's inventory,
// uninstalling a HelmRelease's release). Re-applying is idempotent and corrects drift, for a
// HelmRelease (with driftDetection) by comparing its release's objects with the cluster.
// ReconcileAllForce reconciles everything. docs/reconcile.md describes passes, deletion,
// ordering by dependsOn, pruning and the status contract; docs/flux.md what is done with each
// Flux kind and field.
//
// The code is cut by kind: sources.go, kustomization.go, helmrelease.go and bundleobjects.go
// (the bundle's cluster item), over one runner (runner.go, finalize.go) that handles finalizer,
// suspend, timeout, Event and status for any kind, and sets Ready, Reconciling and Stalled
// through fluxcd/pkg/runtime/conditions (docs/design/reconcile-runner.md).
package reconcile

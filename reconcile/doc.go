// Package reconcile is Ferry's cluster-side reconciler for Kustomizations and HelmReleases
// (ferry.dev/v1alpha1). For a Kustomization it takes the Git item it names from the cache's
// current bundle, extracts the item's tree into memory, builds the Kustomization's path with
// kustomize (no remote bases, no plugins), applies the result with server-side apply (field
// manager "ferry"), prunes what the previous build applied and this one no longer holds, and
// writes the outcome to the status. For a HelmRelease it loads the chart item it names, merges
// the values, and installs or upgrades the release with Helm's SDK, rolling a failed upgrade
// back.
//
// The caller runs ReconcileAll often (every 30-60 s, and after each import); it reconciles
// the objects that are due (new generation or source revision, not Ready, a requestedAt
// request, a dependency reconciled, or interval elapsed) and finalizes deleted ones (pruning a
// Kustomization's inventory, uninstalling a HelmRelease's release). Re-applying is idempotent
// and corrects drift, for a HelmRelease by comparing its release's objects with the cluster.
// ReconcileAllForce reconciles everything. docs/reconcile.md describes passes, deletion,
// ordering by dependsOn, pruning and the status contract.
//
// The code is cut by kind: kustomization.go, helmrelease.go and bundleobjects.go (the bundle's
// cluster item), over one runner (runner.go, finalize.go) that handles finalizer, suspend,
// timeout, Event and status for any kind, and sets Ready, Reconciling and Stalled through
// fluxcd/pkg/runtime/conditions (docs/design/reconcile-runner.md).
package reconcile

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KustomizationKind is the kind of Kustomization objects.
const KustomizationKind = "Kustomization"

// GitSourceKind is the only source kind of this version: a Git item of the current bundle in
// the cache, named by its bundle item name.
const GitSourceKind = "GitSource"

// Condition types and reasons a Kustomization's status carries.
const (
	// ReadyCondition is the condition that says whether the last reconciliation succeeded.
	ReadyCondition = "Ready"

	// ReconciliationSucceededReason: the build was applied (and, with wait, became ready).
	ReconciliationSucceededReason = "ReconciliationSucceeded"
	// BuildFailedReason: the source could not be extracted, kustomize could not build it, or
	// postBuild substitution failed (including a missing substituteFrom object).
	BuildFailedReason = "BuildFailed"
	// ApplyFailedReason: the server rejected an object, or pruning failed.
	ApplyFailedReason = "ApplyFailed"
	// HealthCheckFailedReason: with wait, the applied objects, or the healthChecks objects,
	// did not become ready in time.
	HealthCheckFailedReason = "HealthCheckFailed"
	// DependencyNotReadyReason: a dependency is missing, not Ready, or not at its current revision.
	DependencyNotReadyReason = "DependencyNotReady"
	// DependencyCycleReason: the Kustomization is part of a dependsOn cycle.
	DependencyCycleReason = "DependencyCycle"
	// SourceNotFoundReason: the cache's current bundle has no Git item of that name.
	SourceNotFoundReason = "SourceNotFound"
	// ServiceAccountNotFoundReason: spec.serviceAccountName names a ServiceAccount that does
	// not exist in the Kustomization's namespace.
	ServiceAccountNotFoundReason = "ServiceAccountNotFound"
)

// Kustomization builds a folder of a Git source with kustomize and applies it to the cluster
// with server-side apply.
type Kustomization struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   KustomizationSpec   `json:"spec,omitempty"`
	Status KustomizationStatus `json:"status,omitempty"`
}

// KustomizationSpec is what to build and how to apply it.
type KustomizationSpec struct {
	// SourceRef names the source: kind GitSource and the bundle item's name.
	SourceRef SourceReference `json:"sourceRef"`
	// Path is the folder of the source to build, relative to its root ("" or "./": the root).
	Path string `json:"path,omitempty"`
	// Interval is the longest the Kustomization goes without being reconciled: ReconcileAll
	// reconciles it when the interval has passed, and sooner when its spec, its source revision
	// or a dependency changed, it is not Ready, or a reconcile is requested.
	Interval metav1.Duration `json:"interval"`
	// Prune deletes objects a previous build applied that the current build no longer holds.
	Prune bool `json:"prune"`
	// DependsOn lists Kustomizations and HelmReleases that must be Ready at their current
	// revision first.
	DependsOn []DependencyReference `json:"dependsOn,omitempty"`
	// TargetNamespace sets the namespace of every namespaced object of the build.
	TargetNamespace string `json:"targetNamespace,omitempty"`
	// Timeout bounds one reconciliation: build, apply, prune and wait (default: Interval).
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Wait waits for every applied object to become ready before the Kustomization is Ready.
	Wait bool `json:"wait,omitempty"`
	// Suspend stops reconciliation; the status is left as it is.
	Suspend bool `json:"suspend,omitempty"`
	// ServiceAccountName is a ServiceAccount of the Kustomization's namespace: when set, the
	// reconciler applies, prunes and reads for health as that ServiceAccount (impersonating
	// system:serviceaccount:<namespace>:<name>), so the Kustomization is bound by its RBAC.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Images overrides container image names, tags and digests in the build (a kustomize
	// overlay's images list).
	Images []Image `json:"images,omitempty"`
	// PostBuild substitutes variables in the built objects before they are applied.
	PostBuild *PostBuild `json:"postBuild,omitempty"`
	// HealthChecks lists objects that must be Current (kstatus) within the timeout after the
	// apply before the Kustomization is Ready.
	HealthChecks []HealthCheckReference `json:"healthChecks,omitempty"`
}

// PostBuild is the variable substitution done on the built objects: ${VAR} and
// ${VAR:=default} in their string values are replaced. Objects annotated or labelled
// kustomize.toolkit.fluxcd.io/substitute: disabled are left alone.
type PostBuild struct {
	// Substitute holds variables by name; it wins over SubstituteFrom.
	Substitute map[string]string `json:"substitute,omitempty"`
	// SubstituteFrom reads variables from ConfigMaps and Secrets of the Kustomization's
	// namespace, in order (a later one wins).
	SubstituteFrom []SubstituteReference `json:"substituteFrom,omitempty"`
}

// SubstituteReference names a ConfigMap or Secret whose data are substitution variables.
type SubstituteReference struct {
	// Kind is ConfigMap or Secret.
	Kind string `json:"kind"`
	// Name is the object's name in the Kustomization's namespace.
	Name string `json:"name"`
	// Optional lets the reconciliation go on when the object does not exist.
	Optional bool `json:"optional,omitempty"`
}

// HealthCheckReference names an object whose health the Kustomization waits for; Namespace
// is empty for cluster-scoped objects.
type HealthCheckReference struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace,omitempty"`
}

// Image is an image override: every container image named Name gets NewName, NewTag or
// Digest (the digest wins over the tag).
type Image struct {
	// Name is the image name to match, without tag or digest.
	Name string `json:"name"`
	// NewName replaces the image name.
	NewName string `json:"newName,omitempty"`
	// NewTag replaces the tag.
	NewTag string `json:"newTag,omitempty"`
	// Digest replaces the tag with a digest ("sha256:…").
	Digest string `json:"digest,omitempty"`
}

// SourceReference names a source of the cache.
type SourceReference struct {
	// Kind is GitSource.
	Kind string `json:"kind"`
	// Name is the bundle item's name.
	Name string `json:"name"`
}

// DependencyReference names another Kustomization or HelmRelease; Kind defaults to the
// dependent's kind and Namespace to the dependent's namespace.
type DependencyReference struct {
	// Kind is Kustomization or HelmRelease.
	Kind      string `json:"kind,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// KustomizationStatus is what the reconciler observed and did.
type KustomizationStatus struct {
	// ObservedGeneration is the generation of the spec last reconciled.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions holds Ready, and Reconciling or Stalled while they are True (kstatus).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastAppliedRevision is the commit last applied successfully.
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`
	// LastAttemptedRevision is the commit of the last attempt, successful or not.
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`
	// Inventory lists the objects the Kustomization applied; pruning works from it.
	Inventory *ResourceInventory `json:"inventory,omitempty"`
	// LastHandledReconcileAt is the value of the reconcile.ferry.dev/requestedAt annotation
	// the reconciler last handled.
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
}

// ResourceInventory lists applied objects.
type ResourceInventory struct {
	Entries []ResourceRef `json:"entries"`
}

// ResourceRef is one applied object.
type ResourceRef struct {
	// ID is "<namespace>_<name>_<group>_<kind>", as Flux writes it.
	ID string `json:"id"`
	// Version is the object's API version (without the group).
	Version string `json:"v"`
}

// KustomizationList is a list of Kustomizations.
type KustomizationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Kustomization `json:"items"`
}

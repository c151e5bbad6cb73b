package api

// Condition reasons sync writes besides Flux's own (github.com/fluxcd/pkg/apis/meta and the
// kinds' API packages): each names something only a reconciler working from a signed cache, with
// no network, meets.
const (
	// SourceNotCarriedReason: the source (a GitRepository's URL and ref, an OCIRepository's URL
	// and ref, a HelmRepository's chart and version) is not among the items of the cache's
	// current bundle. The message names the URL, the ref and the ferry.yaml line to add.
	SourceNotCarriedReason = "SourceNotCarried"
	// DependencyCycleReason: the object is part of a dependsOn cycle.
	DependencyCycleReason = "DependencyCycle"
	// ServiceAccountNotFoundReason: spec.serviceAccountName names a ServiceAccount that does
	// not exist in the object's namespace.
	ServiceAccountNotFoundReason = "ServiceAccountNotFound"
	// ValuesFailedReason: a HelmRelease's valuesFrom source is missing or does not parse.
	ValuesFailedReason = "ValuesFailed"
	// DriftCorrectionFailedReason: objects of a Helm release drifted from its manifest and
	// could not be checked or put back.
	DriftCorrectionFailedReason = "DriftCorrectionFailed"
	// RetriesExceededReason: the reason of Stalled=True when a HelmRelease's install or upgrade
	// remediation retries are exhausted; Ready says which.
	RetriesExceededReason = "RetriesExceeded"
	// FinalizedReason: the Event recorded when a deleted object's finalizer was removed.
	FinalizedReason = "Finalized"
	// UnsupportedReason: a field asks for something sync does not do (a Bucket source, SOPS
	// decryption, a remote kubeConfig); the message names the field.
	UnsupportedReason = "Unsupported"
	// AccessDeniedReason: a lockdown setting refuses what the object asks (a reference across
	// namespaces, Helm hooks of a tenant's chart); the message names the setting. As Flux's
	// acl.AccessDeniedReason.
	AccessDeniedReason = "AccessDenied"
	// ReleaseNotOwnedReason: the Helm release a HelmRelease names exists and was made by
	// another HelmRelease, or by hand: it is neither upgraded nor, on deletion, uninstalled.
	ReleaseNotOwnedReason = "ReleaseNotOwned"
)

// Finalizer is the finalizer sync puts on every object it reconciles, Flux's own: a deleted
// Kustomization with prune has its inventory deleted, a deleted HelmRelease its release
// uninstalled, before it goes.
const Finalizer = "finalizers.fluxcd.io"

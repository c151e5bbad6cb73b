package v1alpha1

import (
	_ "embed"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of Ferry's API.
const (
	Group   = "ferry.dev"
	Version = "v1alpha1"
)

// GroupVersion is ferry.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// KustomizationCRD is the CustomResourceDefinition of Kustomization, as YAML.
//
//go:embed crds/ferry.dev_kustomizations.yaml
var KustomizationCRD []byte

// HelmReleaseCRD is the CustomResourceDefinition of HelmRelease, as YAML.
//
//go:embed crds/ferry.dev_helmreleases.yaml
var HelmReleaseCRD []byte

// CRDs returns every CRD of Ferry's API, as YAML.
func CRDs() [][]byte { return [][]byte{KustomizationCRD, HelmReleaseCRD} }

var (
	// SchemeBuilder registers Ferry's types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds Ferry's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Kustomization{}, &KustomizationList{}, &HelmRelease{}, &HelmReleaseList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Finalizer is the finalizer the reconciler puts on every Kustomization and HelmRelease it
// reconciles: when the object is deleted, the reconciler prunes its inventory (a
// Kustomization with prune) or uninstalls its Helm release (a HelmRelease) before removing it.
const Finalizer = "finalizers.ferry.dev"

// ReconcileRequestAnnotation, set to any new value (by convention the current time), asks the
// reconciler to reconcile the object at its next pass even when it is not due; the value
// handled last is recorded in status.lastHandledReconcileAt (Flux's
// reconcile.fluxcd.io/requestedAt convention).
const ReconcileRequestAnnotation = "reconcile.ferry.dev/requestedAt"

// Reasons of Events and Ready conditions about deletion and drift, shared by both kinds.
const (
	// FinalizedReason: the Event recorded when a deleted object's finalizer was removed (after
	// its inventory was pruned or its release uninstalled, when that applies).
	FinalizedReason = "Finalized"
	// PruneFailedReason: a deleted Kustomization's inventory could not be deleted; the
	// finalizer stays and the next pass tries again.
	PruneFailedReason = "PruneFailed"
	// UninstallFailedReason: a deleted HelmRelease's release could not be uninstalled; the
	// finalizer stays and the next pass tries again.
	UninstallFailedReason = "UninstallFailed"
)

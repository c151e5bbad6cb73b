// Package v1alpha1 holds Ferry's API types in group ferry.dev, version v1alpha1: the
// Kustomization, which tells the reconciler to build a folder of a Git item in the cache with
// kustomize and apply it to the cluster, and the HelmRelease, which installs and upgrades a chart
// item of the cache as a Helm release. Field names follow Flux's where they fit.
//
// The CRD manifests are in crds/ and embedded as KustomizationCRD and HelmReleaseCRD, so the
// reconciler can install them; docs/reconcile.md describes every field and the status contract.
package v1alpha1

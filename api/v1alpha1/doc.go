// Package v1alpha1 holds Ferry's API types in group ferry.dev, version v1alpha1: the
// Kustomization, which tells the reconciler to build a folder of a Git item in the cache with
// kustomize and apply it to the cluster. Field names follow Flux's where they fit.
//
// The CRD manifest is in crds/ and embedded as KustomizationCRD, so the reconciler can install
// it; docs/reconcile.md describes every field and the status contract.
package v1alpha1

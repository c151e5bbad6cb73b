// Package api is the cluster API sync reconciles: Flux's own kinds, unchanged.
//
// Kustomization (kustomize.toolkit.fluxcd.io/v1), HelmRelease (helm.toolkit.fluxcd.io/v2) and
// the sources GitRepository, OCIRepository, HelmRepository and HelmChart
// (source.toolkit.fluxcd.io/v1) are Flux's Go types from its API modules, at the versions
// go.mod pins; crds/ holds their CustomResourceDefinitions, generated from those same modules
// by `make crds`. This package embeds the CRDs, builds the scheme, and names what Ferry adds to
// Flux's vocabulary: the condition reasons for a source the bundle does not carry and for the
// fields that need a network the cluster does not have (docs/flux.md).
package api

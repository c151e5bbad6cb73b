// Package kbuild builds a Flux Kustomization's path from a source tree as kustomize-controller
// does: it extracts a Flux artifact (tar.gz) into memory safely (no absolute names, no .., links
// resolved inside the tree, bounded size and entries), generates the overlay a Kustomization's
// spec asks for (targetNamespace, images, patches, namePrefix/nameSuffix, commonMetadata),
// refuses remote bases and plugins, and applies postBuild substitution. Both sides use it:
// sync's reconcile before applying, mirror's discovery when it packs a Flux entry point.
package kbuild

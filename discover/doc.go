// Package discover is mirror's Flux discovery: it builds each Flux entry point of a mirror
// spec (a folder of a carried Git repository) as Flux would — every Kustomization's sourceRef
// and path, every GitRepository, OCIRepository, HelmRepository, HelmChart and ArtifactGenerator
// it reaches, each HelmRelease's chart rendered with its values — and lists the sources,
// charts and container images the rendered objects need, with the object that needs each.
// Git sources and charts are fetched into the pack's store as they are found (their trees and
// archives are what discovery reads); images are listed for pack to fetch.
package discover

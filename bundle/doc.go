// Package bundle owns Ferry's bundle format: the media types, the signed root manifest that
// lists every item, building a bundle while streaming, reading and writing it as an OCI image
// layout directory, a deterministic tar and a set of parts, and deltas' base references.
//
// It also owns the item codecs (the Git, chart and cluster items' media types, encoders and
// decoders) and the one rejection type, Error, whose checks cover structure and trust alike.
//
// It imports only the standard library, go-digest, the OCI specs, oras-go's errdef sentinels
// and, for the cluster item's canonical YAML, sigs.k8s.io/yaml and apimachinery's JSON decoder:
// both halves of Ferry depend on it, so it must not pull either half's dependencies along (no
// Helm SDK, no Kubernetes client).
package bundle

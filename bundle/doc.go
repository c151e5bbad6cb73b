// Package bundle owns Ferry's bundle format: the media types, the signed root manifest that
// lists every item, building a bundle while streaming, reading and writing it as an OCI image
// layout directory, a deterministic tar and a set of parts, and deltas' base references.
//
// It imports only the standard library, go-digest and the OCI specs: both halves of Ferry
// depend on it, so it must not pull either half's dependencies along.
package bundle

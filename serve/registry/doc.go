// Package registry is a read-only OCI Distribution (v2) API over a snapshot of the cache:
// manifests by tag and digest, blobs with Range, tag lists, the catalog and the referrers API,
// with the spec's JSON errors. Repositories keep their upstream names, and every byte and digest
// is exactly as upstream, verified again as it is served: damage is a 500, never a 404.
package registry

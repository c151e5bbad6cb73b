// Package serve serves the cache to the cluster, read-only: an OCI Distribution registry
// (serve/registry) for images, charts and Flux artifacts, and a Git smart-HTTP remote
// (serve/gitserve) for Git sources, on one listener with TLS, optional authentication, request
// limits and structured access logs.
package serve

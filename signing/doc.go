// Package signing signs bundle roots on the connected side with a cosign key, writing the
// signature into the bundle in cosign's own form (a simple-signing payload in a manifest
// tagged sha256-<root hex>.sig) so `cosign verify --key` accepts a bundle pushed to a registry,
// and `sync` verifies it offline against keys pinned in its configuration.
package signing

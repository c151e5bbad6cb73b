// Package cache is the sync side's content-addressed store: blobs by digest behind a store of
// a few verbs (fetch, exists, push), references to accepted bundles and sources, the agent's
// state that no bundle can write, atomic crash-safe import, garbage collection and fsck.
package cache

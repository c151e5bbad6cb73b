// Package cache is the sync side's content-addressed store: blobs by digest (an OCI layout's
// blobs/sha256), a record of each accepted bundle, and the agent's state (the last accepted
// sequence and root), which no bundle can write. It imports bundles from any medium, verifying
// while copying, and commits them atomically: a crash at any instant leaves the cache as it was
// before the import or as it is after, never between. It also collects garbage and proves
// itself whole with fsck. Readers (serve, reconcile) are handed a Snapshot: the current
// bundle's record and the blobs, read-only and verified again while they are read
// (docs/design/cache-view.md). The on-disk layout is docs/cache-format.md.
package cache

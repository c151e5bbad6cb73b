// Package verify makes every trust decision the sync side takes: root signatures against
// pinned keys (and their rotation), freshness and anti-rollback, completeness, size and count
// limits checked before parsing, path safety, and upstream image signatures.
//
// It decides and does no I/O of its own beyond the readers it is handed, and never imports
// the cache: verification happens in readers that hash and count bytes while they move.
package verify

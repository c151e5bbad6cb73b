// Package medium owns moving a finished Ferry bundle to and from the network media: S3-compatible
// buckets (the bundle's tar as parts plus a part list, written with minio-go) and OCI registries
// (the root's graph and its attachments, tagged, copied with oras-go).
//
// It reuses package bundle for the format: the tar and its stream order, part names and part
// lists, and every check a reader makes. Directories, tar files and parts in a folder are
// bundle's own; docs/media.md says how a bundle is laid out on each medium.
package medium

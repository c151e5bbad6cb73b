// Package gitserve serves the Git items of a snapshot of the cache, read-only, over Git's
// smart-HTTP protocol (v0/v1 upload-pack), which `git clone`, `git fetch` and go-git (Flux's
// source-controller) speak.
//
// It needs no git executable. For each Git item, Reload turns the item's packfile into a bare
// repository under the work directory: the pack, an index made with go-git's packfile parser
// (which streams the pack from disk), and the item's refs. That repository is derived data: it
// is built once per pack digest, reused across reloads and restarts, and rebuilt when damaged.
//
// A repository is served at /<item name>.git: GET info/refs?service=git-upload-pack advertises
// its refs and POST git-upload-pack sends the objects asked for, through go-git's upload-pack
// session. A fresh clone of the whole history is the stored pack sent as it is; a shallow
// request (--depth) is answered here, since go-git's session has no shallow support. Pushes are
// refused with 403; docs/serve-git.md describes the URLs and refs.
package gitserve

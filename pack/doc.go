// Package pack builds a bundle from a mirror spec on the connected side: it fetches every
// source concurrently into a layout, writes the root with its sequence, lifetime and lineage,
// signs it and proves the layout complete. Package medium writes the result to the chosen media.
package pack

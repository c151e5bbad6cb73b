// Package fetch is the connected side's reach into upstreams: it resolves each source of a
// mirror spec (a Git ref, a chart version range, an image tag policy) to an exact revision and
// copies its content, byte for byte, into a bundle layout, returning the bundle item that
// describes it. Nothing on the sync side imports this package.
package fetch

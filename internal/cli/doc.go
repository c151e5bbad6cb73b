// Package cli holds what both of Ferry's commands share: the version command, the --output
// flag and its formats, terminal detection for progress lines, and human sizes (printing and
// parsing "4GiB"). The subcommands themselves live in cmd/mirror and cmd/sync, thin cobra
// wiring over the packages that do the work.
package cli

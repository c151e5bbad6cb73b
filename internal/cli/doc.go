// Package cli holds what both of Ferry's commands share: the version command and the
// --output flag's formats. Each command's own subcommands live with the package that does
// the work; cmd/mirror and cmd/sync only assemble them.
package cli

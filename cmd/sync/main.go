// Command sync runs inside a disconnected cluster: it verifies Ferry bundles offline, imports
// them into its content-addressed cache, serves that cache and reconciles the cluster from it.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/internal/cli"
)

func main() {
	root := &cobra.Command{
		Use:   "sync",
		Short: "Verify, import, serve and apply Ferry bundles inside a disconnected cluster",
		Long: `sync is the agent that lives in the disconnected cluster. It picks up bundles made by
'mirror' (from a drop directory, a bucket or a registry), verifies them offline against keys
pinned in its configuration, imports them atomically into its cache, serves that cache to the
cluster as an OCI registry and a Git remote, and reconciles the cluster from it. It reaches
nothing but the cluster's API server and the medium the bundles arrive on.`,
		SilenceUsage: true,
	}
	root.AddCommand(cli.VersionCommand(), importCommand(), statusCommand(), fsckCommand(), gcCommand(), serveCommand(), registryConfigCommand(), reconcileCommand(), installCommand(), runCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

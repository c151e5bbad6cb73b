// Command mirror runs on a connected host: it reads a Ferry spec, pulls Git repositories, Helm
// charts and images with their signatures, and packs them into one signed bundle.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/internal/cli"
)

func main() {
	root := &cobra.Command{
		Use:   "mirror",
		Short: "Pack upstream sources into a signed Ferry bundle for a disconnected cluster",
		Long: `mirror runs on a host that can reach your upstreams. It reads a declarative spec
(ferry.yaml) naming Git repositories, Helm charts and container images, pulls them with their
upstream signatures, and packs them into one signed OCI bundle: a directory, a tar, split parts,
an S3 bucket or an OCI registry. Carry the bundle across the gap; 'sync' takes it from there.`,
		SilenceUsage: true,
	}
	root.PersistentFlags().BoolP("verbose", "v", false, "log every step (structured, to stderr)")
	root.AddCommand(cli.VersionCommand(), packCommand(), inspectCommand(), verifyCommand(), keyStatementCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

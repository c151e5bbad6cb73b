package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/internal/buildinfo"
)

// Output formats accepted by --output.
const (
	OutputText = "text"
	OutputJSON = "json"
)

// AddOutputFlag adds --output (-o) to cmd, bound to target, defaulting to text.
func AddOutputFlag(cmd *cobra.Command, target *string) {
	cmd.Flags().StringVarP(target, "output", "o", OutputText, "output format: text or json (for scripts)")
}

// Print writes v as indented JSON when format is json, and text otherwise.
func Print(w io.Writer, format string, v any, text string) error {
	switch format {
	case OutputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case OutputText, "":
		_, err := fmt.Fprintln(w, text)
		return err
	default:
		return fmt.Errorf("--output %q: unknown format; use text or json", format)
	}
}

// VersionCommand returns the `version` subcommand.
func VersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get()
			return Print(cmd.OutOrStdout(), output, info, info.String())
		},
	}
	AddOutputFlag(cmd, &output)
	return cmd
}

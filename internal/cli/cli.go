package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

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

// IsTerminal reports whether the command's standard error is a terminal: progress is shown
// there, and nowhere else.
func IsTerminal(cmd *cobra.Command) bool {
	f, ok := cmd.ErrOrStderr().(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Human writes a byte count for people: 1.5 GiB.
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

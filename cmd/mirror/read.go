package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

const sourcesHelp = cli.BundleArgHelp

// readBundle reads and verifies the bundle the argument names, on whatever medium.
func readBundle(cmd *cobra.Command, arg string, m *cli.MediumFlags, opts ...bundle.ReadOption) (*bundle.Result, error) {
	loc, err := medium.Parse(arg)
	if err != nil {
		return nil, err
	}
	return medium.Read(cmd.Context(), loc, append(m.Options(), medium.WithReadOptions(opts...))...)
}

// summary is what inspect and verify print for scripts.
type summary struct {
	Root       string        `json:"root"`
	Sequence   uint64        `json:"sequence"`
	Created    time.Time     `json:"created"`
	Expires    time.Time     `json:"expires"`
	Previous   string        `json:"previous,omitempty"`
	Base       string        `json:"base,omitempty"`
	Blobs      int           `json:"blobs"`
	Bytes      int64         `json:"bytes"`
	Signatures int           `json:"signatures"`
	Verified   *bool         `json:"signatureVerified,omitempty"`
	Items      []itemSummary `json:"items"`
}

type itemSummary struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	Source    string   `json:"source"`
	Revision  string   `json:"revision"`
	Digest    string   `json:"digest"`
	Platforms []string `json:"platforms,omitempty"`
	Referrers int      `json:"referrers"`
}

func summarize(res *bundle.Result) summary {
	b := res.Bundle
	s := summary{Root: string(res.Root.Digest), Sequence: b.Sequence, Created: b.Created, Expires: b.Expires,
		Previous: string(b.Previous), Base: string(b.Base), Blobs: res.Blobs, Bytes: res.Bytes, Signatures: len(res.Attachments)}
	for _, it := range b.Items {
		s.Items = append(s.Items, itemSummary{Name: it.Name, Kind: string(it.Kind), Source: it.Source, Revision: it.Revision,
			Digest: string(it.Descriptor.Digest), Platforms: it.Platforms, Referrers: len(it.Referrers)})
	}
	return s
}

func (s summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bundle %d  root %s\n", s.Sequence, s.Root)
	fmt.Fprintf(&b, "created %s  expires %s\n", s.Created.Format(time.RFC3339), s.Expires.Format(time.RFC3339))
	if s.Previous != "" {
		fmt.Fprintf(&b, "previous %s\n", s.Previous)
	}
	if s.Base != "" {
		fmt.Fprintf(&b, "delta against %s\n", s.Base)
	}
	fmt.Fprintf(&b, "%d blobs, %s, %d signature(s)", s.Blobs, cli.Human(s.Bytes), s.Signatures)
	if s.Verified != nil {
		fmt.Fprintf(&b, ", verified: %v", *s.Verified)
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tREVISION\tSOURCE\tREFERRERS")
	for _, it := range s.Items {
		rev := it.Revision
		if len(rev) > 23 {
			rev = rev[:23] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", it.Name, it.Kind, rev, it.Source, it.Referrers)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}

func inspectCommand() *cobra.Command {
	var o *cli.MediumFlags
	var output string
	cmd := &cobra.Command{
		Use:   "inspect BUNDLE",
		Short: "Show a bundle's items, revisions, sizes, sequence, expiry and signatures",
		Long: `inspect reads a bundle, checking every blob's size and digest as it goes, and shows what
it carries. It does not check the signature: use 'mirror verify --key' for that.

` + sourcesHelp,
		Example: "  mirror inspect bundle/\n  mirror inspect /media/usb/bundle.tar.parts.json --output json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := readBundle(cmd, args[0], o)
			if err != nil {
				return err
			}
			s := summarize(res)
			return cli.Print(cmd.OutOrStdout(), output, s, s.text())
		},
	}
	o = cli.AddMediumFlags(cmd)
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

func verifyCommand() *cobra.Command {
	var o *cli.MediumFlags
	var output string
	var keys []string
	cmd := &cobra.Command{
		Use:   "verify BUNDLE --key cosign.pub",
		Short: "Check a bundle is whole, unaltered and signed by a trusted key",
		Long: `verify reads a bundle and checks every blob reachable from its root (size and digest),
that nothing is missing, and that the root carries a cosign signature by one of the keys given.
It exits non-zero, naming the item, the blob and the check, on the first problem.

` + sourcesHelp,
		Example: "  mirror verify bundle/ --key cosign.pub",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keys) == 0 {
				return fmt.Errorf("--key: give the public key(s) the bundle must be signed by")
			}
			var pinned []verify.Key
			for _, k := range keys {
				key, err := verify.LoadPublicKey(k)
				if err != nil {
					return err
				}
				pinned = append(pinned, key)
			}
			sigs := verify.NewCollector()
			res, err := readBundle(cmd, args[0], o, bundle.WithVisitor(sigs.Visit))
			if err != nil {
				return err
			}
			if err := verify.RootSignature(cmd.Context(), sigs, res.Root, res.Attachments, pinned); err != nil {
				return err
			}
			ok := true
			s := summarize(res)
			s.Verified = &ok
			return cli.Print(cmd.OutOrStdout(), output, s, s.text())
		},
	}
	cmd.Flags().StringSliceVar(&keys, "key", nil, "cosign public key (cosign.pub) to trust; repeat for several")
	o = cli.AddMediumFlags(cmd)
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

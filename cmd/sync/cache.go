package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

const defaultCache = "/var/lib/ferry/cache"

func addCacheFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "cache", defaultCache, "the cache directory")
}

func importCommand() *cobra.Command {
	var (
		dir, output string
		keys        []string
		threshold   int
		allowGaps   bool
		minSequence uint64
		open        *cli.MediumFlags
	)
	cmd := &cobra.Command{
		Use:   "import BUNDLE",
		Short: "Verify a bundle offline and import it into the cache, atomically",
		Long: `import reads a bundle from its medium, checks it against the keys you pin (--key) and the
cache's state (sequence, lineage, expiry), and copies every blob the cache lacks, hashing it as it
is copied. Nothing becomes visible until the whole bundle has verified; then one atomic commit
makes it the current bundle. A rejected bundle changes nothing and the error names the item and
the check. Importing the current bundle again changes nothing.

BUNDLE is a bundle directory, a .tar file, a part list (NAME.parts.json, its parts beside it, in
any order), s3://bucket/prefix/NAME.parts.json, or oci://host/repository:tag.`,
		Example: "  sync import /media/usb/bundle.tar.parts.json --key /etc/ferry/cosign.pub --cache /var/lib/ferry/cache",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if len(keys) == 0 {
				return fmt.Errorf("--key: pin the public key(s) bundles must be signed by")
			}
			policy := verify.Policy{Threshold: threshold, AllowGaps: allowGaps, MinSequence: minSequence}
			for _, k := range keys {
				key, err := verify.LoadPublicKey(k)
				if err != nil {
					return err
				}
				policy.Keys = append(policy.Keys, verify.TrustedKey{Key: key})
			}
			c, err := cache.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			// The pinned keys with the cache's key set applied (what key statements of accepted
			// bundles introduced or retired, as 'sync run' keeps it), and the clock floor.
			pinned := policy
			if policy, err = agent.ImportPolicy(pinned, c); err != nil {
				return err
			}
			var progress []bundle.ReadOption
			if cli.IsTerminal(cmd) {
				progress = append(progress, bundle.WithObserver(progressLine(cmd)))
			}
			loc, err := medium.Parse(args[0])
			if err != nil {
				return err
			}
			start := time.Now()
			res, err := c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
				return medium.Read(ctx, loc, append(open.Options(), medium.WithReadOptions(append(opts, progress...)...))...)
			}, policy)
			if cli.IsTerminal(cmd) {
				fmt.Fprint(cmd.ErrOrStderr(), "\r\033[K")
			}
			if err != nil {
				return err
			}
			text := fmt.Sprintf("bundle %d imported: root %s, %d blobs (%d new, %s) in %.1fs",
				res.Record.Sequence, res.Record.Root, res.Blobs, res.New, cli.Human(res.NewBytes), time.Since(start).Seconds())
			changes, err := agent.ApplyKeyStatements(ctx, c, pinned, res.Record)
			if err != nil {
				return fmt.Errorf("bundle %d imported, but its key statements could not be kept (import it again to retry): %w", res.Record.Sequence, err)
			}
			for _, ch := range changes {
				verb := "introduced: trusted from the next bundle on"
				if ch.Statement.Revoke {
					verb = "revoked: no longer trusted"
				}
				text += fmt.Sprintf("\nkey %q (%s) %s", ch.Statement.Name, ch.Fingerprint, verb)
			}
			if res.AlreadyAccepted {
				text = fmt.Sprintf("bundle %d is already the current bundle: nothing to do", res.Record.Sequence)
			}
			return cli.Print(cmd.OutOrStdout(), output, res, text)
		},
	}
	addCacheFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringSliceVar(&keys, "key", nil, "public key (cosign.pub) bundles must be signed by; repeat for several")
	f.IntVar(&threshold, "threshold", 1, "how many of the keys must have signed")
	f.Uint64Var(&minSequence, "min-sequence", 0, "refuse bundles at or below this sequence (the floor that holds if the cache is lost)")
	f.BoolVar(&allowGaps, "allow-gaps", false, "accept a bundle whose previous bundle is not the current one (sequence must still grow)")
	open = cli.AddMediumFlags(cmd)
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

func progressLine(cmd *cobra.Command) func(bundle.Entry) {
	var n int
	var bytes int64
	return func(e bundle.Entry) {
		n++
		bytes += e.Descriptor.Size
		fmt.Fprintf(cmd.ErrOrStderr(), "\r\033[K%d files, %s verified… %s", n, cli.Human(bytes), e.Item)
	}
}

func statusCommand() *cobra.Command {
	var dir, output, configFile string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the current bundle, every bundle the cache holds, and the bundles rejected or stuck",
		Long: `status shows the cache's current bundle, every bundle it holds, and the last bundles that
were rejected (by 'sync run'): where each was found, which check refused it and why; and the
candidates stuck because their medium kept failing past the agent's retries, with the medium's
error (check "stuck" in -o json). It reads the cache without its lock, so it works while 'sync
run' is running. It also lists the keys bundles are verified against, with their validity
windows: with --config, the keys the configuration pins and those key statements introduced (and
retired) since, as the cache keeps them; without it, only the latter.`,
		Example: "  sync status --cache /var/lib/ferry/cache -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := struct {
				State      cache.State       `json:"state"`
				Bundles    []cache.Record    `json:"bundles"`
				Rejections []cache.Rejection `json:"rejections"`
				Keys       []agent.KeyStatus `json:"keys"`
			}{Bundles: []cache.Record{}, Rejections: []cache.Rejection{}, Keys: []agent.KeyStatus{}}
			var cfg *agent.Config
			if configFile != "" {
				var err error
				if cfg, err = agent.LoadConfig(configFile); err != nil {
					return err
				}
				if !cmd.Flags().Changed("cache") {
					dir = cfg.Cache
				}
			}
			c, err := cache.OpenReader(dir) // no lock: the agent may be importing
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err == nil { // a cache nothing made yet holds nothing
				if out.State, err = c.State(); err != nil {
					return err
				}
				recs, err := c.Records()
				if err != nil {
					return err
				}
				out.Bundles = append(out.Bundles, recs...)
				if out.Rejections, err = c.Rejections(); err != nil {
					return err
				}
				keys, err := agent.TrustedKeys(cfg, c)
				if err != nil {
					return err
				}
				out.Keys = append(out.Keys, keys...)
			}
			st, recs := out.State, out.Bundles
			var b strings.Builder
			if st.Sequence == 0 {
				b.WriteString("no bundle accepted yet\n")
			} else {
				fmt.Fprintf(&b, "current bundle %d (%s)\n\n", st.Sequence, st.Root)
			}
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQUENCE\tROOT\tCREATED\tEXPIRES\tACCEPTED\tITEMS")
			for _, r := range recs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", r.Sequence, string(r.Root)[:19]+"…", r.Created.Format(time.RFC3339), r.Expires.Format(time.RFC3339), r.Accepted.Format(time.RFC3339), len(r.Items))
			}
			tw.Flush()
			if len(out.Keys) > 0 {
				b.WriteString("\nkeys (bundles are verified against those not revoked):\n")
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tFINGERPRINT\tNOT BEFORE\tNOT AFTER\tFROM\tREVOKED")
				for _, k := range out.Keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Fingerprint[:min(len(k.Fingerprint), 23)]+"…", timeOr(k.NotBefore, "-"), timeOr(k.NotAfter, "-"), orDash(k.Origin), orDash(k.Revoked))
				}
				tw.Flush()
			}
			// A stuck candidate (agent.CheckStuck) is no rejection: the medium kept failing.
			var rejected, stuck []cache.Rejection
			for _, r := range out.Rejections {
				if r.Check == agent.CheckStuck {
					stuck = append(stuck, r)
				} else {
					rejected = append(rejected, r)
				}
			}
			seqOf := func(r cache.Rejection) string {
				if r.Sequence > 0 {
					return fmt.Sprint(r.Sequence)
				}
				return "?"
			}
			if len(rejected) > 0 {
				fmt.Fprintf(&b, "\nrejected (last %d, newest last; left where they were):\n", len(rejected))
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tSOURCE\tBUNDLE\tSEQUENCE\tCHECK\tWHY")
				for _, r := range rejected {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Source, r.Candidate, seqOf(r), r.Check, strings.ReplaceAll(r.Message, "\n", " "))
				}
				tw.Flush()
			}
			if len(stuck) > 0 {
				fmt.Fprintf(&b, "\nstuck (last %d, newest last; the medium kept failing past the retries: still retried, later bundles no longer wait for them):\n", len(stuck))
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tSOURCE\tBUNDLE\tSEQUENCE\tMEDIUM ERROR")
				for _, r := range stuck {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Source, r.Candidate, seqOf(r), strings.ReplaceAll(r.Message, "\n", " "))
				}
				tw.Flush()
			}
			return cli.Print(cmd.OutOrStdout(), output, out, strings.TrimRight(b.String(), "\n"))
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().StringVar(&configFile, "config", "", "the agent's configuration file: list its pinned keys too (and read --cache from it)")
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

func timeOr(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fsckCommand() *cobra.Command {
	var dir, output string
	var quarantine bool
	cmd := &cobra.Command{
		Use:   "fsck",
		Short: "Prove the cache whole: re-hash every blob, walk every bundle, check the state",
		Long: `fsck re-hashes every blob in the cache, walks the whole graph of every bundle the cache
holds, and checks the state names one of them. It exits non-zero if anything is wrong. With
--quarantine, blobs whose content does not match their digest are moved to quarantine/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cache.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			rep, err := c.Fsck(cmd.Context(), quarantine)
			if err != nil {
				return err
			}
			text := fmt.Sprintf("cache %s: %d blobs (%s), %d bundles: ", dir, rep.Blobs, cli.Human(rep.Bytes), rep.Bundles)
			if rep.OK() {
				text += "whole"
			} else {
				text += fmt.Sprintf("%d problem(s)", len(rep.Problems))
				for _, p := range rep.Problems {
					text += fmt.Sprintf("\n  %s: %s", p.What, p.Issue)
					if p.Quarantined != "" {
						text += " (moved to " + p.Quarantined + ")"
					}
				}
			}
			if err := cli.Print(cmd.OutOrStdout(), output, rep, text); err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("cache %s is not whole", dir)
			}
			return nil
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().BoolVar(&quarantine, "quarantine", false, "move blobs that fail their digest to quarantine/")
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

func gcCommand() *cobra.Command {
	var dir, output string
	var keep int
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Keep the last N bundles and what they reference; remove the rest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cache.Open(dir)
			if err != nil {
				return err
			}
			defer c.Close()
			rep, err := c.GC(cmd.Context(), keep)
			if err != nil {
				return err
			}
			text := fmt.Sprintf("kept bundles %v, dropped %v, removed %d blobs (%s)", rep.Kept, rep.Dropped, rep.Removed, cli.Human(rep.RemovedBytes))
			return cli.Print(cmd.OutOrStdout(), output, rep, text)
		},
	}
	addCacheFlag(cmd, &dir)
	cmd.Flags().IntVar(&keep, "keep", 3, "how many of the latest bundles to keep")
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

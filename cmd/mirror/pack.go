package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/discover"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/pack"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/spec"
)

func packCommand() *cobra.Command {
	var (
		specPath, outDir, tarPath, split, key, previous, output string
		s3                                                      s3Flags
		registry                                                string
		plainHTTP                                               []string
		sequence                                                uint64
		keyStatements                                           []string
		concurrency                                             int
		explain                                                 bool
	)
	cmd := &cobra.Command{
		Use:   "pack",
		Short: "Pull every source of a spec and pack them into one signed bundle",
		Long: `pack reads a mirror spec (ferry.yaml), resolves each Git ref, chart version range and
image tag policy to an exact revision, copies the content byte for byte with upstream
signatures, and writes one bundle signed with your cosign key. Every source is bounded by its
timeout (default 15m) and by the bundle's size limits, checked while it is fetched: an upstream
past one is refused with an error naming the source and the limit (docs/spec.md).

The bundle is built as a directory (--out, or a temporary folder) and then written to every
other output asked for: a tar file (--tar), its parts (--tar with --split), an S3 bucket (--s3)
and an OCI registry (--registry).

With flux: entry points in the spec, pack builds each as Flux would (Kustomizations, their
sources, HelmReleases' charts rendered with their values) and carries every source, chart and
image the objects need, besides what git:, charts: and images: list; upstreams: sends its
requests to the mirrors your site reaches. --explain lists what discovery found, and which
object needs each, without packing (docs/flux.md, "Discovery").`,
		Example: `  # Pack into a directory and a tar split into 4 GiB parts, signed
  COSIGN_PASSWORD=… mirror pack -f ferry.yaml --key cosign.key --out bundle/ --tar /media/usb/bundle.tar --split 4GiB

  # What do the Flux entry points need? (fetches only the Git sources and charts it reads)
  mirror pack -f ferry.yaml --explain

  # Pack straight to a bucket and a registry, with a summary for scripts
  mirror pack --key cosign.key --s3 s3://transfer/ferry --s3-endpoint minio.example:9000 \
      --registry registry.example/ferry/bundles:latest --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := spec.Load(specPath)
			if err != nil {
				return err
			}
			if explain {
				o := pack.Options{Spec: s, Fetch: &fetch.Options{PlainHTTP: plainHTTP}, Logger: logger(cmd)}
				res, err := pack.Explain(ctx, o)
				if err != nil {
					return err
				}
				return cli.Print(cmd.OutOrStdout(), output, res, explainText(res))
			}
			var partSize int64
			if split != "" {
				if tarPath == "" {
					return fmt.Errorf("--split needs --tar: the parts are named after the tar file")
				}
				if partSize, err = cli.ParseSize(split); err != nil {
					return fmt.Errorf("--split: %w", err)
				}
			}
			if outDir == "" && tarPath == "" && s3.url == "" && registry == "" {
				return fmt.Errorf("no output: give --out, --tar, --s3 or --registry")
			}
			dir := outDir
			if dir == "" {
				if dir, err = os.MkdirTemp("", "ferry-pack-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			o := pack.Options{Spec: s, Dir: dir, Sequence: sequence, Previous: digest.Digest(previous),
				Fetch: &fetch.Options{PlainHTTP: plainHTTP}, Concurrency: concurrency, Logger: logger(cmd)}
			if previous != "" {
				if _, err := digest.Parse(previous); err != nil {
					return fmt.Errorf("--previous %q: %w", previous, err)
				}
			}
			if cli.IsTerminal(cmd) {
				o.Progress = cmd.ErrOrStderr()
			}
			for _, p := range keyStatements {
				raw, err := readKeyStatement(p)
				if err != nil {
					return fmt.Errorf("--key-statement: %w", err)
				}
				o.KeyStatements = append(o.KeyStatements, raw)
			}
			if key != "" {
				if o.Signer, err = signing.LoadKey(key, []byte(os.Getenv(signing.PasswordEnv))); err != nil {
					return err
				}
				// Decrypting a cosign key runs scrypt (N=65536, r=8 in keys from
				// generate-key-pair): 64 MiB of scratch, garbage once the key is out. The pack
				// itself allocates little, so no GC would come to collect it and the heap goal
				// it set keeps the scavenger off: the process would stay 64 MiB larger for the
				// whole run. Hand it back now (one GC of a ~3 MiB live heap, about a millisecond).
				debug.FreeOSMemory()
			}
			res, err := pack.Pack(ctx, o)
			if err != nil {
				return err
			}
			locs, opts, err := outputs(res, tarPath, partSize, s3, registry)
			if err != nil {
				return err
			}
			var written []string
			if len(locs) > 0 {
				ws, err := medium.WriteAll(ctx, locs, res.Dir, append(opts, medium.WithPlainHTTP(plainHTTP...))...)
				if err != nil {
					return err
				}
				for _, w := range ws {
					written = append(written, w.String())
				}
			}
			summary := struct {
				*pack.Result
				Sequence uint64   `json:"sequence"`
				Items    int      `json:"items"`
				Outputs  []string `json:"outputs"`
			}{res, res.Bundle.Sequence, len(res.Bundle.Items), append(nonEmpty(outDir), written...)}
			text := fmt.Sprintf("bundle %d packed: root %s, %d items, %d blobs (%s), signed: %v\n  %s",
				res.Bundle.Sequence, res.Root.Digest, len(res.Bundle.Items), res.Blobs, cli.Human(res.Bytes), res.Signed, strings.Join(summary.Outputs, "\n  "))
			return cli.Print(cmd.OutOrStdout(), output, summary, text)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "spec", "f", "ferry.yaml", "the mirror spec to pack")
	f.StringVar(&outDir, "out", "", "write the bundle as a directory (an OCI layout) here")
	f.StringVar(&tarPath, "tar", "", "write the bundle as a tar file here")
	f.StringVar(&split, "split", "", "with --tar: write the tar as parts of this size (4GiB, 700MB) and a part list, instead of one file")
	f.StringVar(&registry, "registry", "", "push the bundle to this OCI repository and tag (registry.example/ferry/bundles:latest)")
	s3.add(cmd)
	f.StringVar(&key, "key", "", "cosign private key to sign the bundle with (password in $"+signing.PasswordEnv+")")
	f.StringArrayVar(&keyStatements, "key-statement", nil, "a signed key statement file ('mirror key-statement') the bundle carries, introducing or revoking a key (repeatable)")
	f.Uint64Var(&sequence, "sequence", 0, "the bundle's sequence number (default: the creation time in Unix seconds)")
	f.StringVar(&previous, "previous", "", "root digest of the bundle packed before this one, to chain them")
	f.StringSliceVar(&plainHTTP, "plain-http", nil, "registry hosts (host:port) to reach over plain HTTP, upstream or output")
	f.IntVar(&concurrency, "concurrency", 4, "sources fetched at once")
	f.BoolVar(&explain, "explain", false, "list what the spec's flux: entry points need and which object needs each, without packing")
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

// outputs are the locations pack writes the bundle to besides its directory: the tar (or its
// parts), the bucket, the registry, in that order.
func outputs(res *pack.Result, tarPath string, partSize int64, s3 s3Flags, registry string) ([]medium.Location, []medium.Option, error) {
	var locs []medium.Location
	var opts []medium.Option
	if tarPath != "" {
		if partSize > 0 {
			locs = append(locs, medium.Parts(filepath.Dir(tarPath), filepath.Base(tarPath)).Split(partSize))
		} else {
			locs = append(locs, medium.TarFile(tarPath))
		}
	}
	if s3.url != "" {
		loc, opt, err := s3.location(fmt.Sprintf("bundle-%d.tar", res.Bundle.Sequence))
		if err != nil {
			return nil, nil, err
		}
		locs, opts = append(locs, loc), append(opts, opt)
	}
	if registry != "" {
		loc, err := medium.Parse("oci://" + registry)
		if err != nil || loc.Kind() != medium.KindRegistry {
			return nil, nil, fmt.Errorf("--registry %q: want host/repository:tag", registry)
		}
		locs = append(locs, loc)
	}
	return locs, opts, nil
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			if abs, err := filepath.Abs(x); err == nil {
				x = abs
			}
			out = append(out, x)
		}
	}
	return out
}

// explainText writes discovery's findings as a table, each artifact with the objects that
// need it, then its warnings.
func explainText(res *discover.Result) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tITEM\tSOURCE\tREVISION\tNEEDED BY")
	for _, a := range res.Artifacts {
		rev := a.Revision
		if rev == "" {
			rev = "-"
		}
		name := a.Name
		if a.Listed {
			name += " (listed)"
		}
		for i, n := range a.NeededBy {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Kind, name, a.Source, rev, n)
				continue
			}
			fmt.Fprintf(tw, "\t\t\t\t%s\n", n)
		}
	}
	tw.Flush()
	for _, w := range res.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

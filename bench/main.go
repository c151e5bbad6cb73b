// Command bench measures Ferry against its peers and the machine's floors on the same data in
// the same run, and prints ratios (never asserts timings):
//
//   - pull: `mirror pack` of one large image from a local registry into a bundle directory,
//     against `crane pull --format=oci` of the same image into an OCI layout;
//   - import: `sync import` of that bundle into a cache (every byte hashed, written, synced),
//     against the floors `openssl dgst -sha256` (hashing) and `cp -r` + `sync` (durable writes).
//
// Peak memory is each process's own high-water mark of resident memory (sampled; a shell
// pipeline's is the shell's, so the floors' memory is indicative only). Run it with `make bench`; BENCH_SIZE
// (default 1GiB) sets the image size.
package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

type result struct {
	name   string
	wall   time.Duration
	rssKiB int64
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func measure(name, dir string, env []string, bin string, args ...string) (result, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	peak, err := testenv.RunPeak(cmd)
	if err != nil {
		return result{}, fmt.Errorf("%s: %v\n%s", name, err, out.String())
	}
	return result{name, time.Since(start), peak}, nil
}

func run(ctx context.Context) error {
	size := int64(1 << 30)
	if s := os.Getenv("BENCH_SIZE"); s != "" {
		var err error
		if size, err = cli.ParseSize(s); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	reg, err := testenv.StartRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()

	// One image of four uncompressed random layers, pushed to the local registry.
	const layers = 4
	img := empty.Image
	for i := range layers {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(io.LimitReader(mrand.NewChaCha8([32]byte{byte(i), 'b'}), size/layers)), nil
		}, tarball.WithMediaType("application/vnd.oci.image.layer.v1.tar"))
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.ParseReference(reg.Host+"/bench/large:1", name.Insecure)
	if err != nil {
		return err
	}
	fmt.Printf("pushing a %s image (%d layers) to %s…\n", cli.Human(size), layers, reg.Host)
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return err
	}

	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("bench"), nil })
	if err != nil {
		return err
	}
	os.WriteFile(filepath.Join(work, "cosign.key"), keys.PrivateBytes, 0o600)
	os.WriteFile(filepath.Join(work, "cosign.pub"), keys.PublicBytes, 0o644)
	spec := fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\nimages:\n  - name: large\n    image: %s/bench/large\n    tag: \"1\"\n    signatures: false\n", reg.Host)
	os.WriteFile(filepath.Join(work, "ferry.yaml"), []byte(spec), 0o644)

	bin, _ := filepath.Abs("bin")
	crane, err := testenv.ToolPath("crane")
	if err != nil {
		return err
	}
	var rs []result
	add := func(r result, err error) error {
		if err != nil {
			return err
		}
		rs = append(rs, r)
		fmt.Printf("  %-34s %7.2fs  %6.1f MiB\n", r.name, r.wall.Seconds(), float64(r.rssKiB)/1024)
		return nil
	}
	sh := func(script string) (string, []string) { return "/bin/sh", []string{"-c", script} }
	drop := func() { exec.Command("sync").Run() }

	drop()
	if err := add(measure("crane pull --format=oci", work, nil, crane, "pull", "--insecure", "--format=oci", ref.String(), filepath.Join(work, "crane-layout"))); err != nil {
		return err
	}
	drop()
	if err := add(measure("mirror pack --out", work, []string{"COSIGN_PASSWORD=bench"}, filepath.Join(bin, "mirror"), "pack", "-f", "ferry.yaml", "--key", "cosign.key", "--plain-http", reg.Host, "--out", "bundle")); err != nil {
		return err
	}
	drop()
	b, a := sh("cat bundle/blobs/sha256/* | openssl dgst -sha256 >/dev/null")
	if err := add(measure("floor: openssl dgst -sha256", work, nil, b, a...)); err != nil {
		return err
	}
	drop()
	b, a = sh("cp -r bundle/blobs copy && sync")
	if err := add(measure("floor: cp -r + sync", work, nil, b, a...)); err != nil {
		return err
	}
	drop()
	if err := add(measure("sync import (hash+write+fsync)", work, nil, filepath.Join(bin, "sync"), "import", "--cache", "cache", "--key", "cosign.pub", "bundle")); err != nil {
		return err
	}

	by := map[string]result{}
	for _, r := range rs {
		by[r.name] = r
	}
	ratio := func(a, b string) string {
		return fmt.Sprintf("%.2f× time, %.2f× memory", by[a].wall.Seconds()/by[b].wall.Seconds(), float64(by[a].rssKiB)/float64(by[b].rssKiB))
	}
	fmt.Printf("\nratios (lower is better) on %s:\n", cli.Human(size))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  mirror pack vs crane pull\t%s\n", ratio("mirror pack --out", "crane pull --format=oci"))
	fmt.Fprintf(tw, "  sync import vs cp -r + sync\t%s\n", ratio("sync import (hash+write+fsync)", "floor: cp -r + sync"))
	fmt.Fprintf(tw, "  sync import vs openssl dgst\t%s\n", ratio("sync import (hash+write+fsync)", "floor: openssl dgst -sha256"))
	tw.Flush()
	return nil
}

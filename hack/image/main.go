// Command image builds the sync agent's OCI image without a container engine: one layer on an
// empty base holding a static sync binary at /usr/local/bin/sync (and an empty /tmp), run as
// the non-root user 65532 with no /etc/passwd, entrypoint ["/usr/local/bin/sync"], labelled
// with org.opencontainers.image.source, .version and .revision, and titled "ferry sync"
// (org.opencontainers.image.title): the title marks the image as the agent's, and sync refuses a
// bundle carrying an agent image older than the newest it accepted (check agent-rollback), so
// give --version a semver version.
//
// Each --binary is a static Linux executable (CGO_ENABLED=0); its platform is read from its ELF
// header. One binary makes an image, several make an image index. Every timestamp is fixed
// (--created, SOURCE_DATE_EPOCH, or the Unix epoch), so the same binaries give the same digest.
// The image goes to an OCI layout folder (--layout), named for containerd's import, and/or to
// a registry (--push). The digest is printed on standard output.
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o bin/linux_amd64/sync ./cmd/sync
//	go run ./hack/image --binary bin/linux_amd64/sync --version v1.2.0 --layout bin/image
//	go run ./hack/image --binary bin/linux_amd64/sync --push registry.example/ferry/sync:v1.2.0
package main

import (
	"archive/tar"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/mod/semver"

	"github.com/ferry-gitops/ferry/deploy"
	"github.com/ferry-gitops/ferry/verify"
)

// What the image holds and how it runs.
const (
	BinaryPath    = "/usr/local/bin/sync"
	User          = "65532:65532"
	DefaultSource = "https://github.com/ferry-gitops/ferry"
)

// OCI annotation and label keys.
const (
	labelSource   = "org.opencontainers.image.source"
	labelVersion  = verify.LabelVersion
	labelRevision = "org.opencontainers.image.revision"
	labelCreated  = "org.opencontainers.image.created"
	labelTitle    = verify.LabelTitle
	refName       = "org.opencontainers.image.ref.name"
	containerdRef = "io.containerd.image.name"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Options say what to build and where to put it.
type Options struct {
	// Binaries are static Linux sync binaries, one per platform.
	Binaries []string
	// Version and Revision label the image; empty, they are read from the first binary's Go
	// build information.
	Version, Revision string
	// Source labels the image with where its source is.
	Source string
	// Created is every timestamp in the image.
	Created time.Time
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var binaries listFlag
	var created, layoutDir, push, ref string
	var plainHTTP bool
	fs.Var(&binaries, "binary", "a static Linux sync binary (CGO_ENABLED=0); repeat for more platforms, which makes an image index")
	fs.StringVar(&o.Version, "version", "", "org.opencontainers.image.version (default: the binary's module version, or dev)")
	fs.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (default: the binary's vcs.revision)")
	fs.StringVar(&o.Source, "source", DefaultSource, "org.opencontainers.image.source")
	fs.StringVar(&created, "created", "", "the image's timestamps: RFC 3339 or Unix seconds (default: $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z)")
	fs.StringVar(&layoutDir, "layout", "", "write the image to this OCI layout folder (absent or empty)")
	fs.StringVar(&ref, "name", "", "the name the layout records for the image, as containerd imports it (default "+deploy.ImageName+":<version>, what `sync install` runs without --image)")
	fs.StringVar(&push, "push", "", "push the image to this reference (host/repository:tag)")
	fs.BoolVar(&plainHTTP, "plain-http", false, "push over plain HTTP")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./hack/image --binary PATH [--binary PATH...] [--layout DIR] [--push REF [--plain-http]]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(binaries) == 0 {
		return errors.New("--binary: give the static sync binary (CGO_ENABLED=0 GOOS=linux go build ./cmd/sync)")
	}
	if layoutDir == "" && push == "" {
		return errors.New("give --layout DIR, --push REF, or both")
	}
	o.Binaries = binaries
	var err error
	if o.Created, err = parseCreated(created, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	defer img.Close()
	if !semver.IsValid(img.Version) {
		fmt.Fprintf(stderr, "warning: version %q is not semver: sync refuses a bundle carrying this image (check agent-rollback); pass --version vX.Y.Z to ship it in a bundle\n", img.Version)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if layoutDir != "" {
		if ref == "" {
			ref = deploy.ImageName + ":" + deploy.ImageTag(img.Version)
		}
		if err := img.WriteLayout(layoutDir, ref); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (%s) to the OCI layout %s as %s\n", d, strings.Join(img.Platforms, ", "), layoutDir, ref)
	}
	if push != "" {
		var opts []name.Option
		if plainHTTP {
			opts = append(opts, name.Insecure)
		}
		r, err := name.ParseReference(push, opts...)
		if err != nil {
			return fmt.Errorf("--push %q: %w", push, err)
		}
		if err := img.Push(ctx, r); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "pushed %s (%s) to %s\n", d, strings.Join(img.Platforms, ", "), r)
	}
	_, err = fmt.Fprintln(stdout, d)
	return err
}

// parseCreated reads --created, or else SOURCE_DATE_EPOCH, or else gives the Unix epoch.
func parseCreated(flagValue, epoch string) (time.Time, error) {
	v, what := flagValue, "--created"
	if v == "" {
		v, what = epoch, "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 or Unix seconds", what, v)
	}
	return t.UTC(), nil
}

// Image is a built image: one platform's image, or an index of several.
type Image struct {
	// Image is set for one platform, Index for several.
	Image v1.Image
	Index v1.ImageIndex
	// Platforms are the platforms built, "linux/amd64".
	Platforms []string
	// Version is the version the image is labelled with.
	Version string
	tmp     []string
}

// Digest is the image's (or the index's) manifest digest.
func (i *Image) Digest() (v1.Hash, error) {
	if i.Index != nil {
		return i.Index.Digest()
	}
	return i.Image.Digest()
}

// Close removes the layer files Build wrote.
func (i *Image) Close() error {
	var errs []error
	for _, p := range i.tmp {
		errs = append(errs, os.Remove(p))
	}
	return errors.Join(errs...)
}

// WriteLayout writes the image to a new OCI layout folder, its entry in index.json annotated
// with ref (containerd's io.containerd.image.name) and ref's tag (org.opencontainers.image.ref.name),
// so `ctr images import` of the folder as a tar names it ref.
func (i *Image) WriteLayout(dir, ref string) error {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--name %q: %w", ref, err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("--layout %s: not empty", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("--layout %s: %w", dir, err)
	}
	anns := map[string]string{containerdRef: r.Name(), refName: r.Identifier()}
	if i.Index != nil {
		err = p.AppendIndex(i.Index, layout.WithAnnotations(anns))
	} else {
		err = p.AppendImage(i.Image, layout.WithAnnotations(anns))
	}
	if err != nil {
		return fmt.Errorf("--layout %s: %w", dir, err)
	}
	return nil
}

// Push writes the image to a registry, with the credentials of Docker's config.
func (i *Image) Push(ctx context.Context, r name.Reference) error {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	var err error
	if i.Index != nil {
		err = remote.WriteIndex(r, i.Index, opts...)
	} else {
		err = remote.Write(r, i.Image, opts...)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", r, err)
	}
	return nil
}

// Build makes the image of o's binaries. Close the result when done with it.
func Build(o Options) (*Image, error) {
	out := &Image{}
	seen := map[string]string{}
	var adds []mutate.IndexAddendum
	for _, bin := range o.Binaries {
		plat, err := Platform(bin)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[plat.String()]; dup {
			return nil, fmt.Errorf("--binary %s: %s is also %s", bin, plat, other)
		}
		seen[plat.String()] = bin
		if out.Version == "" {
			version, revision := buildVersion(bin)
			if o.Version == "" {
				o.Version = version
			}
			if o.Revision == "" {
				o.Revision = revision
			}
			out.Version = o.Version
		}
		img, err := out.platformImage(bin, plat, o)
		if err != nil {
			return nil, err
		}
		out.Platforms = append(out.Platforms, plat.String())
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	anns := labels(o)
	if len(adds) == 1 {
		out.Image = mutate.Annotations(adds[0].Add.(v1.Image), anns).(v1.Image)
		return out, nil
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	out.Index = mutate.Annotations(idx, anns).(v1.ImageIndex)
	return out, nil
}

// labels are the image's labels, and its manifest's (or index's) annotations.
func labels(o Options) map[string]string {
	l := map[string]string{
		labelSource:  o.Source,
		labelVersion: o.Version,
		labelCreated: o.Created.Format(time.RFC3339),
		labelTitle:   verify.AgentTitle, // what makes the sync side check the version (agent-rollback)
	}
	if o.Revision != "" {
		l[labelRevision] = o.Revision
	}
	return l
}

// buildVersion reads the module version and VCS revision from a Go binary's build
// information: "dev" when it has no version (a build from a work tree).
func buildVersion(bin string) (version, revision string) {
	version = "dev"
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return version, ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision
}

// platformImage makes one platform's image: the binary's layer on an empty base.
func (out *Image) platformImage(bin string, plat *v1.Platform, o Options) (v1.Image, error) {
	tmp, err := writeLayerTar(bin, o.Created)
	if err != nil {
		return nil, err
	}
	out.tmp = append(out.tmp, tmp)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(tmp) },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer of %s: %w", bin, err)
	}
	created := v1.Time{Time: o.Created}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "hack/image: COPY sync " + BinaryPath, Comment: "ferry sync " + o.Version},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		User:       User,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin", "TMPDIR=/tmp"},
		Labels:     labels(o),
		ExposedPorts: map[string]struct{}{
			"5000/tcp": {}, // the registry and Git remote
			"8080/tcp": {}, // health and metrics
		},
	}
	return mutate.ConfigFile(img, cf)
}

// writeLayerTar writes the layer's uncompressed tar to a temporary file: the directories
// leading to the binary, the binary (root-owned, 0755, runnable by any user), and /tmp (1777).
// Every header is fixed but for the binary's size and bytes.
func writeLayerTar(bin string, created time.Time) (string, error) {
	src, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "ferry-image-layer-*.tar")
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(f)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: created, Format: tar.FormatPAX}
	}
	headers := []*tar.Header{
		hdr("tmp/", tar.TypeDir, 0o1777, 0),
		hdr("usr/", tar.TypeDir, 0o755, 0),
		hdr("usr/local/", tar.TypeDir, 0o755, 0),
		hdr("usr/local/bin/", tar.TypeDir, 0o755, 0),
	}
	for _, h := range headers {
		if err = tw.WriteHeader(h); err != nil {
			break
		}
	}
	if err == nil {
		err = tw.WriteHeader(hdr(strings.TrimPrefix(BinaryPath, "/"), tar.TypeReg, 0o755, fi.Size()))
	}
	if err == nil {
		var n int64
		if n, err = io.Copy(tw, src); err == nil && n != fi.Size() {
			err = fmt.Errorf("%s changed while being read", bin)
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("layer of %s: %w", bin, err)
	}
	return f.Name(), nil
}

// Platform reads a binary's platform from its ELF header, and checks that it is a static
// executable, which an image with nothing else in it can run.
func Platform(bin string) (*v1.Platform, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("--binary %s: not a Linux executable: %w", bin, err)
	}
	defer f.Close()
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return nil, fmt.Errorf("--binary %s: built for %s, not Linux", bin, f.OSABI)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("--binary %s: ELF type %s, not an executable", bin, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("--binary %s: dynamically linked (it names an interpreter); build it with CGO_ENABLED=0", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return nil, fmt.Errorf("--binary %s: needs shared libraries %v; build it with CGO_ENABLED=0", bin, libs)
	}
	arch := map[elf.Machine]string{
		elf.EM_X86_64:  "amd64",
		elf.EM_AARCH64: "arm64",
		elf.EM_S390:    "s390x",
		elf.EM_RISCV:   "riscv64",
		elf.EM_386:     "386",
	}[f.Machine]
	if f.Machine == elf.EM_PPC64 && f.Data == elf.ELFDATA2LSB {
		arch = "ppc64le"
	}
	if arch == "" {
		return nil, fmt.Errorf("--binary %s: machine %s is not a platform this tool knows", bin, f.Machine)
	}
	return &v1.Platform{OS: "linux", Architecture: arch}, nil
}

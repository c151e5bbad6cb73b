package bundle

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadOption configures a reader.
type ReadOption func(*readOptions)

type readOptions struct {
	limits   Limits
	have     HaveFunc
	visit    Visitor
	observe  func(Entry)
	progress func(n int64)
}

// WithLimits sets the limits a reader enforces (zero fields keep their defaults).
func WithLimits(l Limits) ReadOption { return func(o *readOptions) { o.limits = l } }

// WithHave lets a delta bundle omit blobs that have reports as held.
func WithHave(have HaveFunc) ReadOption { return func(o *readOptions) { o.have = have } }

// WithVisitor passes every file to v as it is read and verified.
func WithVisitor(v Visitor) ReadOption { return func(o *readOptions) { o.visit = v } }

// WithObserver calls observe with every file's entry before its bytes are read, for progress
// reports. It sees no bytes and cannot refuse anything.
func WithObserver(observe func(Entry)) ReadOption {
	return func(o *readOptions) { o.observe = observe }
}

// WithProgress calls progress with the count of every run of blob bytes read, as they are read
// (from the reading goroutine): for byte counts and for telling a stalled medium from a slow one.
func WithProgress(progress func(n int64)) ReadOption {
	return func(o *readOptions) { o.progress = progress }
}

func newReadGraph(opts []ReadOption) *graph {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	visit := o.visit
	if o.observe != nil {
		next := visit
		visit = func(ctx context.Context, e Entry, r io.Reader) error {
			o.observe(e)
			if next == nil {
				return nil
			}
			return next(ctx, e, r)
		}
	}
	g := newGraph(o.limits, o.have, visit)
	g.progress = o.progress
	return g
}

// Files is the folder a layout reader reads: the layout's files by slash path ("oci-layout",
// "index.json", "blobs/sha256/<hex>"). Stat reports a file's size and whether it is a regular
// file (never following a link); Open opens it.
type Files interface {
	Stat(name string) (size int64, regular bool, err error)
	Open(name string) (io.ReadCloser, error)
}

// BlobOpener is implemented by Files that open blobs by descriptor rather than by path, such as
// a registry, whose manifests and blobs are served at different endpoints. The reader then opens
// blobs with OpenBlob, relies on the verifying reader for sizes, and treats an error wrapping
// fs.ErrNotExist as a missing blob.
type BlobOpener interface {
	OpenBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// dirFiles reads a layout directory through os.Root: no name or link leads out of it.
type dirFiles struct{ root *os.Root }

func (d dirFiles) Stat(name string) (int64, bool, error) {
	fi, err := d.root.Lstat(name)
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Mode().IsRegular(), nil
}

func (d dirFiles) Open(name string) (io.ReadCloser, error) { return d.root.Open(name) }

// ReadLayout reads the bundle in the layout directory dir in stream order, checking every
// blob's size and digest while it is read. It returns an error, naming the item, the blob and
// the check, unless the bundle is complete.
func ReadLayout(ctx context.Context, dir string, opts ...ReadOption) (*Result, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle directory %s: %w", dir, err)
	}
	defer root.Close()
	return ReadFiles(ctx, dirFiles{root}, opts...)
}

// ReadFiles reads a bundle laid out as files, as ReadLayout does for a directory.
func ReadFiles(ctx context.Context, files Files, opts ...ReadOption) (*Result, error) {
	g := newReadGraph(opts)
	for _, f := range []struct {
		name   string
		accept func(context.Context, int64, io.Reader) error
	}{{LayoutFile, g.acceptLayout}, {IndexFile, g.acceptIndex}} {
		if err := readRootFile(ctx, files, f.name, f.accept); err != nil {
			return nil, err
		}
	}
	for _, e := range g.entries {
		if err := walkLayout(ctx, g, files, plain(e)); err != nil {
			return nil, err
		}
	}
	return g.finish(ctx, CheckMissing)
}

func readRootFile(ctx context.Context, files Files, name string, accept func(context.Context, int64, io.Reader) error) error {
	size, regular, err := files.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return errorf(name, "", CheckMissing, "is this a Ferry bundle directory?", "missing")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !regular {
		return errorf(name, "", CheckPath, fixRepack, "not a regular file")
	}
	f, err := files.Open(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	return accept(ctx, size, f)
}

// walkLayout reads d and then its children, depth first: stream order.
func walkLayout(ctx context.Context, g *graph, files Files, d ocispec.Descriptor) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n := g.nodes[d.Digest]
	if n == nil || n.seen || n.base {
		return nil
	}
	if bo, ok := files.(BlobOpener); ok {
		rc, err := bo.OpenBlob(ctx, d)
		if errors.Is(err, fs.ErrNotExist) {
			return g.missing(ctx, n, CheckMissing)
		}
		if err != nil {
			return fmt.Errorf("item %s: blob %s: %w", n.item, d.Digest, err)
		}
		children, err := g.blob(ctx, d.Digest, d.Size, rc)
		rc.Close()
		if err != nil {
			return err
		}
		return walkChildren(ctx, g, files, children)
	}
	path := sha256Dir + "/" + d.Digest.Encoded()
	size, regular, err := files.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return g.missing(ctx, n, CheckMissing) // held by a delta's base, or an error
	}
	if err != nil {
		return fmt.Errorf("item %s: blob %s: %w", n.item, d.Digest, err)
	}
	if !regular {
		return errorf(n.item, d.Digest, CheckPath, fixRepack, "not a regular file")
	}
	f, err := files.Open(path)
	if err != nil {
		return fmt.Errorf("item %s: blob %s: %w", n.item, d.Digest, err)
	}
	children, err := g.blob(ctx, d.Digest, size, f)
	f.Close()
	if err != nil {
		return err
	}
	return walkChildren(ctx, g, files, children)
}

func walkChildren(ctx context.Context, g *graph, files Files, children []ocispec.Descriptor) error {
	for _, c := range children {
		if err := walkLayout(ctx, g, files, plain(c)); err != nil {
			return err
		}
	}
	return nil
}

// ReadTar reads a bundle tar from r in one pass, checking every entry's name and type, and
// every blob's size and digest while it is read. It returns an error, naming the item, the blob
// and the check, unless the tar is a complete bundle in stream order.
func ReadTar(ctx context.Context, r io.Reader, opts ...ReadOption) (*Result, error) {
	g := newReadGraph(opts)
	tr := tar.NewReader(r)
	for entries := 0; ; entries++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if e, ok := AsError(err); ok { // the medium's own check (a part) failed
				return nil, e
			}
			return nil, errorf("", "", CheckTruncated, fixRecopy, "tar entry %d: %v", entries+1, err)
		}
		if entries >= g.lim.maxTarEntries() {
			return nil, errorf("", "", CheckLimit, fixLimit, "more than %d tar entries", g.lim.maxTarEntries())
		}
		if err := readTarEntry(ctx, g, hdr, tr); err != nil {
			return nil, err
		}
	}
	return g.finish(ctx, CheckTruncated)
}

func readTarEntry(ctx context.Context, g *graph, hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name != blobsDir+"/" && name != sha256Dir+"/" {
			return errorf("", "", CheckPath, fixRepack, "tar entry %q: unexpected directory", name)
		}
		return nil
	case tar.TypeReg:
	default:
		return errorf("", "", CheckPath, fixRepack, "tar entry %q: type %q is not a regular file (links, devices and the like are refused)", name, hdr.Typeflag)
	}
	if hdr.Size < 0 {
		return errorf("", "", CheckSize, fixRepack, "tar entry %q: negative size", name)
	}
	switch {
	case name == LayoutFile:
		return g.acceptLayout(ctx, hdr.Size, r)
	case name == IndexFile:
		return g.acceptIndex(ctx, hdr.Size, r)
	case strings.HasPrefix(name, sha256Dir+"/"):
		d := digest.Digest("sha256:" + strings.TrimPrefix(name, sha256Dir+"/"))
		if !validDigest(d) {
			return errorf("", "", CheckPath, fixRepack, "tar entry %q: not a blob name (blobs/sha256/ and 64 lowercase hex)", name)
		}
		_, err := g.blob(ctx, d, hdr.Size, r)
		return err
	}
	return errorf("", "", CheckPath, fixRepack, "tar entry %q: not part of a bundle layout", name)
}

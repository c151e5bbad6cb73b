package medium

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// DefaultS3PartSize is the size of the parts Write cuts for a bucket unless the location says
// otherwise (Location.Split).
const DefaultS3PartSize = 1 << 30

// Written is what Write wrote at one location.
type Written struct {
	Location Location
	// Root is the bundle's root.
	Root ocispec.Descriptor
	// Parts is the part list written (KindParts, KindS3).
	Parts *bundle.PartList
}

// String says what was written, as mirror pack reports it: the file, the part list and its
// number of parts, or the repository and tag at the root's digest.
func (w Written) String() string {
	l := w.Location
	switch l.kind {
	case KindParts, KindS3:
		n := 0
		if w.Parts != nil {
			n = len(w.Parts.Parts)
		}
		return fmt.Sprintf("%s (%d parts)", l, n)
	case KindRegistry:
		return l.repository + ":" + l.tag + "@" + string(w.Root.Digest)
	}
	return l.String()
}

// Write writes the bundle in the layout directory layoutDir to loc, verifying every blob as it
// is read; see WriteAll.
func Write(ctx context.Context, loc Location, layoutDir string, opts ...Option) (*Written, error) {
	w, err := WriteAll(ctx, []Location{loc}, layoutDir, opts...)
	if err != nil {
		return nil, err
	}
	return &w[0], nil
}

// WriteAll writes the bundle in layoutDir to every location: a tar file, parts in a folder
// (KindParts, cut as Location.Split says), parts in a bucket (KindS3, DefaultS3PartSize unless
// split otherwise) and a registry tag. The layout is read once: one verified read (every blob
// hashed as it is read, WithReadOptions applying) produces the tar, and an io.MultiWriter feeds
// it through a pipe to each tar, parts and bucket writer at once. A registry push then copies
// the graph from the layout that read verified, without hashing it again; with a registry as
// the only output, the verified read comes first and nothing is sent unless it passes.
//
// Every location is checked before anything is written. A bundle that is not complete is
// written nowhere: no tar file appears, no part list is written (parts already uploaded to a
// bucket are removed), nothing is tagged. The results are in the order of locs.
func WriteAll(ctx context.Context, locs []Location, layoutDir string, opts ...Option) ([]Written, error) {
	o := makeOptions(opts)
	out := make([]Written, len(locs))
	var sinks []*sink
	var pushes []int
	for i, loc := range locs {
		out[i].Location = loc
		switch loc.kind {
		case KindTar, KindParts, KindS3:
			s, err := newSink(loc, o, layoutDir)
			if err != nil {
				return nil, err
			}
			s.index = i
			sinks = append(sinks, s)
		case KindRegistry:
			repo, err := newRepository(loc, o)
			if err != nil {
				return nil, err
			}
			if err := checkTag(repo, loc.tag); err != nil {
				return nil, err
			}
			pushes = append(pushes, i)
		default:
			return nil, fmt.Errorf("%s: cannot write a bundle to a %s (write a tar, parts, s3://bucket/prefix/NAME.parts.json or oci://host/repository:tag)", loc, loc.kind)
		}
	}
	var res *bundle.Result
	if len(sinks) > 0 {
		var err error
		if res, err = writeStreams(ctx, layoutDir, sinks, o.read); err != nil {
			return nil, err
		}
		for _, s := range sinks {
			out[s.index].Root, out[s.index].Parts = res.Root, s.parts
		}
	}
	for _, i := range pushes {
		loc := locs[i]
		repo, err := newRepository(loc, o)
		if err != nil {
			return nil, err
		}
		if res == nil {
			// Nothing is sent unless the bundle is complete.
			if res, err = bundle.ReadLayout(ctx, layoutDir, o.read...); err != nil {
				return nil, fmt.Errorf("%s: refusing to push %s: %w", target(repo, loc.tag), layoutDir, err)
			}
		}
		if out[i].Root, err = pushRegistry(ctx, repo, loc.tag, layoutDir, res); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sink is one writer of the tar stream: it reads its pipe to the end and commits what it wrote
// only then, since the stream ends with io.EOF only once every blob verified.
type sink struct {
	index int
	pr    *io.PipeReader
	pw    *io.PipeWriter
	write func(ctx context.Context, r io.Reader) error
	parts *bundle.PartList
}

func newSink(loc Location, o *options, layoutDir string) (*sink, error) {
	s := &sink{}
	switch loc.kind {
	case KindTar:
		s.write = func(_ context.Context, r io.Reader) error { return writeTarFile(r, loc.path) }
	case KindParts:
		if loc.partSize <= 0 {
			return nil, fmt.Errorf("%s: part size %d must be positive", loc, loc.partSize)
		}
		s.write = func(ctx context.Context, r io.Reader) error {
			if err := os.MkdirAll(loc.path, 0o755); err != nil {
				return err
			}
			list, err := bundle.Split(ctx, r, loc.path, loc.name, loc.partSize)
			if err != nil {
				return fmt.Errorf("parts of %s: %w", filepath.Join(loc.path, loc.name), err)
			}
			s.parts = list
			return nil
		}
	case KindS3:
		client, err := o.s3()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		size := loc.partSize
		if size == 0 {
			size = DefaultS3PartSize
		}
		w, err := newS3Writer(client, loc.bucket, loc.prefix, loc.name, size)
		if err != nil {
			return nil, err
		}
		s.write = func(ctx context.Context, r io.Reader) error {
			list, err := w.write(ctx, r, layoutDir)
			s.parts = list
			return err
		}
	}
	s.pr, s.pw = io.Pipe()
	return s, nil
}

// writeStreams makes the bundle's tar once, verifying every blob as it is read, and feeds it to
// every sink at once. It returns the read's result once every sink committed.
func writeStreams(ctx context.Context, layoutDir string, sinks []*sink, ropts []bundle.ReadOption) (*bundle.Result, error) {
	errs := make([]error, len(sinks))
	done := make(chan struct{})
	writers := make([]io.Writer, len(sinks))
	for i, s := range sinks {
		writers[i] = s.pw
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = s.write(ctx, s.pr)
			s.pr.CloseWithError(errStopped) // unblocks the tar if this writer stopped early
		}()
	}
	res, tarErr := bundle.WriteTar(ctx, io.MultiWriter(writers...), layoutDir, ropts...)
	for _, s := range sinks {
		s.pw.CloseWithError(tarErr) // nil: the writers see io.EOF, the verified end
	}
	for range sinks {
		<-done
	}
	// The first writer that failed on its own says why; those that only saw the stream stop
	// say nothing new. A bundle that is not complete reaches every writer as its stream's error,
	// and the first says so in its own terms.
	for _, err := range errs {
		if err != nil && !errors.Is(err, errStopped) {
			return nil, err
		}
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if tarErr != nil {
		return nil, tarErr
	}
	return res, nil
}

// writeTarFile writes the tar r yields at path with bundle.WriteFileAtomic, so path never
// holds a partial tar.
func writeTarFile(r io.Reader, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := bundle.WriteFileAtomic(path, r); err != nil {
		return fmt.Errorf("tar %s: %w", path, err)
	}
	return nil
}

package medium

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ferry-gitops/ferry/bundle"
)

// RootInfo is what a bundle's root says, read before the bundle is imported to order it.
type RootInfo struct {
	// Sequence and Root, once read; Unreadable is set when the root could not be read because
	// the bundle is malformed (an import will reject it and say why).
	Sequence   uint64
	Root       digest.Digest
	Unreadable bool
}

// ReadRoot reads the bundle at loc only as far as its root, verified against its descriptor,
// and says what it holds (WithLimits bounds it). It keeps nothing and decides no trust: it only
// orders candidates. A malformed bundle is RootInfo.Unreadable, not an error; an error is the
// medium failing (to retry) or ctx ending.
func ReadRoot(ctx context.Context, loc Location, opts ...Option) (*RootInfo, error) {
	o := makeOptions(opts)
	t := &ioErrors{}
	rctx, watch, stop := watchStall(ctx, o.stall)
	defer stop()
	o.progress = watch
	info, err := readRoot(rctx, loc, o, t)
	if cause := stalled(rctx); err != nil && ctx.Err() == nil && cause != nil {
		return nil, &Error{Location: loc.String(), Err: cause, Verdict: err}
	}
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	return info, err
}

func readRoot(ctx context.Context, loc Location, o *options, t *ioErrors) (*RootInfo, error) {
	lim := o.limits
	var out RootInfo
	switch loc.kind {
	case KindLayout, KindTar:
		// The same read as Read's, stopped by rootOptions' visitor once the root arrived.
		_, err := read(ctx, loc, o, t, append(rootOptions(lim, &out), o.progress...))
		return rootOutcome(ctx, &out, err, t)
	case KindParts:
		root, err := os.OpenRoot(loc.path)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return rootOfParts(ctx, &trackedFS{ctx: ctx, fsys: root.FS(), t: t}, bundle.PartListName(loc.name), t, lim, o.progress)
	case KindS3:
		client, err := o.s3()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx) // ends the request of the part being read
		defer cancel()
		return rootOfParts(ctx, &trackedFS{ctx: ctx, fsys: S3FS(ctx, client, loc.bucket, loc.prefix), t: t}, bundle.PartListName(loc.name), t, lim, o.progress)
	case KindRegistry:
		return registryRoot(ctx, loc, o, t)
	}
	return nil, fmt.Errorf("not a bundle: list it for the bundles it holds")
}

// registryRoot fetches and parses a registry bundle's root: the one List found, or the one the
// tag resolves to now.
func registryRoot(ctx context.Context, loc Location, o *options, t *ioErrors) (*RootInfo, error) {
	repo, err := trackedRepository(loc, o, t)
	if err != nil {
		return nil, err
	}
	var desc ocispec.Descriptor
	if loc.root != nil {
		desc = *loc.root
	} else {
		if err := checkTag(repo, loc.tag); err != nil {
			return nil, err
		}
		if desc, err = repo.Resolve(ctx, loc.tag); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", loc.tag, err)
		}
	}
	max := o.limits.MaxManifestSize
	if max <= 0 {
		max = bundle.DefaultMaxManifestSize
	}
	if desc.Size > max {
		return &RootInfo{Unreadable: true}, nil
	}
	data, err := content.FetchAll(ctx, repo, desc) // checks size and digest
	if err != nil {
		return nil, fmt.Errorf("fetch the root of %s: %w", loc.tag, err)
	}
	b, err := bundle.ParseRoot(data)
	if err != nil {
		return &RootInfo{Unreadable: true}, nil
	}
	return &RootInfo{Sequence: b.Sequence, Root: desc.Digest}, nil
}

// rootOfParts reads a split tar up to its root. bundle.ReadParts would read on to the end of
// the tar after the stop (to name a damaged part), so the parts are opened here and the tar
// read directly; the part being read is closed afterwards.
func rootOfParts(ctx context.Context, fsys *trackedFS, name string, t *ioErrors, lim bundle.Limits, extra []bundle.ReadOption) (*RootInfo, error) {
	defer fsys.closeAll()
	var out RootInfo
	r, _, err := bundle.OpenParts(fsys, name, lim)
	if err != nil {
		return rootOutcome(ctx, &out, err, t)
	}
	_, err = bundle.ReadTar(ctx, r, append(rootOptions(lim, &out), extra...)...)
	return rootOutcome(ctx, &out, err, t)
}

// errRootRead stops a read once the root has been read: ordering needs nothing more.
var errRootRead = errors.New("root read")

// rootOptions are the reader options that read a bundle up to its root and stop. The root's
// bytes are verified against its descriptor before they are parsed.
func rootOptions(lim bundle.Limits, out *RootInfo) []bundle.ReadOption {
	visit := func(_ context.Context, e bundle.Entry, r io.Reader) error {
		if e.Item != bundle.ItemRoot || e.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
			return nil
		}
		data, err := io.ReadAll(r) // io.EOF only once the bytes matched the root's digest
		if err != nil {
			return err
		}
		b, err := bundle.ParseRoot(data)
		if err != nil {
			return err
		}
		out.Sequence, out.Root = b.Sequence, e.Descriptor.Digest
		return errRootRead
	}
	noBase := func(context.Context, digest.Digest) (bool, error) { return false, nil } // a delta's root reads all the same
	return []bundle.ReadOption{bundle.WithLimits(lim), bundle.WithHave(noBase), bundle.WithVisitor(visit)}
}

// rootOutcome turns a root read's error into its result: the root, a malformed bundle, or an
// error of the medium (to retry).
func rootOutcome(ctx context.Context, out *RootInfo, err error, t *ioErrors) (*RootInfo, error) {
	switch {
	case errors.Is(err, errRootRead):
		return out, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case t.get() != nil:
		return nil, fmt.Errorf("read the root: %w", t.get())
	case err == nil:
		return nil, fmt.Errorf("read the root: the bundle ended without one") // the reader's own checks say so first
	}
	if _, ok := bundle.AsError(err); ok {
		return &RootInfo{Unreadable: true}, nil
	}
	return nil, fmt.Errorf("read the root: %w", err)
}

package medium

import (
	"context"
	"fmt"
	"os"

	"github.com/ferry-gitops/ferry/bundle"
)

// Read reads and verifies the bundle at loc, whatever medium it is on, in one pass: every blob
// is hashed once while it is read (WithReadOptions adds limits, a delta's base, a visitor). If
// the medium itself fails meanwhile (an I/O error, a network failure, a server error) the error
// is an *Error, which is no verdict on the bundle; any other error is what the reader found.
func Read(ctx context.Context, loc Location, opts ...Option) (*bundle.Result, error) {
	o := makeOptions(opts)
	t := &ioErrors{}
	rctx, watch, stop := watchStall(ctx, o.stall)
	defer stop()
	res, err := read(rctx, loc, o, t, append(o.read, watch...))
	if err != nil && ctx.Err() != nil {
		// Stopped (Ctrl-C, the agent stopping): whatever the reader made of the cut stream.
		return nil, fmt.Errorf("%s: read stopped: %w", loc, context.Cause(ctx))
	}
	if cause := stalled(rctx); err != nil && cause != nil {
		return nil, &Error{Location: loc.String(), Err: cause, Verdict: err}
	}
	return res, t.outcome(loc, err)
}

// read reads the bundle at loc with the reader options ropts, noting the medium's errors in t.
func read(ctx context.Context, loc Location, o *options, t *ioErrors, ropts []bundle.ReadOption) (*bundle.Result, error) {
	switch loc.kind {
	case KindLayout, KindTar:
		// A directory is a layout, any other file a tar, whatever its name.
		fi, err := os.Stat(loc.path)
		if err != nil {
			t.note(err)
			return nil, err
		}
		if fi.IsDir() {
			return readLayout(ctx, loc.path, t, ropts)
		}
		f, err := os.Open(loc.path)
		if err != nil {
			t.note(err)
			return nil, err
		}
		defer f.Close()
		defer interruptible(ctx, f)()
		return bundle.ReadTar(ctx, trackedReader{ctxReader{ctx, f}, t}, ropts...)
	case KindParts:
		root, err := os.OpenRoot(loc.path) // no part name or link leads out of the folder
		if err != nil {
			t.note(err)
			return nil, err
		}
		defer root.Close()
		fsys := &trackedFS{ctx: ctx, fsys: root.FS(), t: t}
		defer fsys.closeAll()
		return bundle.ReadParts(ctx, fsys, bundle.PartListName(loc.name), ropts...)
	case KindS3:
		client, err := o.s3()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		fsys := &trackedFS{ctx: ctx, fsys: S3FS(ctx, client, loc.bucket, loc.prefix), t: t}
		defer fsys.closeAll()
		return bundle.ReadParts(ctx, fsys, bundle.PartListName(loc.name), ropts...)
	case KindRegistry:
		repo, err := trackedRepository(loc, o, t)
		if err != nil {
			return nil, err
		}
		return readRegistry(ctx, repo, loc.tag, ropts...)
	case KindS3Prefix:
		return nil, fmt.Errorf("%s: want s3://bucket/prefix/NAME.parts.json", loc)
	case KindRepository:
		return nil, fmt.Errorf("%s: want oci://host/repository:tag", loc)
	}
	return nil, fmt.Errorf("%s: not a bundle: list it for the bundles it holds", loc)
}

// readLayout reads a layout directory (like bundle.ReadLayout: no name or link leads out of it).
func readLayout(ctx context.Context, dir string, t *ioErrors, ropts []bundle.ReadOption) (*bundle.Result, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.note(err)
		return nil, fmt.Errorf("bundle directory %s: %w", dir, err)
	}
	defer root.Close()
	return bundle.ReadFiles(ctx, layoutFiles{ctx, root, t}, ropts...)
}

// Pull copies the bundle at a registry location, with its attachments, into the new directory
// layoutDir and verifies it (WithReadOptions applies to that read). On error layoutDir holds no
// index.json and is to be discarded.
func Pull(ctx context.Context, loc Location, layoutDir string, opts ...Option) (*bundle.Result, error) {
	o := makeOptions(opts)
	if loc.kind != KindRegistry {
		return nil, fmt.Errorf("%s: pull copies from a registry (oci://host/repository:tag)", loc)
	}
	repo, err := newRepository(loc, o)
	if err != nil {
		return nil, err
	}
	return pullRegistry(ctx, repo, loc.tag, layoutDir, o.read...)
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// ioErrors keeps the first error the medium itself returned while a bundle was read: an I/O
// error, a network failure, a server error. The bundle reader turns such errors into checks
// (a tar that stops is "truncated"), so without this a flaky bucket would look like a damaged
// bundle; with it, the agent knows the verdict came from a failing medium, and retries.
type ioErrors struct {
	mu  sync.Mutex
	err error
}

// note keeps err if it is the medium failing: not the end of a file, and not a file that is
// not there (a missing blob or part is the bundle's fault, and its own check).
func (t *ioErrors) note(err error) {
	if err == nil || err == io.EOF || errors.Is(err, fs.ErrNotExist) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
}

func (t *ioErrors) get() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// trackedReader notes its reader's errors.
type trackedReader struct {
	r io.Reader
	t *ioErrors
}

func (r trackedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.t.note(err)
	return n, err
}

// trackedFS notes the errors of an fs.FS and of the files it opens, and can close every file
// still open (a read stopped after the root leaves the current part open).
type trackedFS struct {
	fsys fs.FS
	t    *ioErrors

	mu   sync.Mutex
	open []fs.File
}

func (f *trackedFS) Open(name string) (fs.File, error) {
	file, err := f.fsys.Open(name)
	f.t.note(err)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.open = append(f.open, file)
	f.mu.Unlock()
	return trackedFile{File: file, t: f.t}, nil
}

// closeAll closes every file opened (closing one twice is harmless here).
func (f *trackedFS) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, file := range f.open {
		file.Close()
	}
	f.open = nil
}

type trackedFile struct {
	fs.File
	t *ioErrors
}

func (f trackedFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.t.note(err)
	return n, err
}

// layoutFiles is a layout directory as bundle.ReadFiles reads it (like bundle.ReadLayout: no
// name or link leads out of the directory), with its I/O errors noted.
type layoutFiles struct {
	root *os.Root
	t    *ioErrors
}

func (l layoutFiles) Stat(name string) (int64, bool, error) {
	fi, err := l.root.Lstat(name)
	l.t.note(err)
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Mode().IsRegular(), nil
}

func (l layoutFiles) Open(name string) (io.ReadCloser, error) {
	f, err := l.root.Open(name)
	l.t.note(err)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{trackedReader{f, l.t}, f}, nil
}

// trackedClient is a registry client that notes transport failures, server errors (5xx, 429)
// and failed body reads.
type trackedClient struct {
	c remote.Client
	t *ioErrors
}

func (c trackedClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.c.Do(req)
	c.t.note(err)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		c.t.note(fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), resp.Status))
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{trackedReader{resp.Body, c.t}, resp.Body}
	return resp, nil
}

// rootInfo is what a candidate's root says, read before the candidate is imported to order it.
type rootInfo struct {
	// Sequence and Root, once read; Unreadable is set when the root could not be read because
	// the bundle is malformed (the import will reject it and say why).
	Sequence   uint64
	Root       digest.Digest
	Unreadable bool
}

// errRootRead stops a read once the root has been read: ordering needs nothing more.
var errRootRead = errors.New("root read")

// rootOptions are the reader options that read a bundle up to its root and stop. The root's
// bytes are verified against its descriptor before they are parsed. Nothing is kept: this only
// orders candidates; trust is decided by the import.
func rootOptions(lim bundle.Limits, out *rootInfo) []bundle.ReadOption {
	visit := func(_ context.Context, e bundle.Entry, r io.Reader) error {
		if e.Item != "root" || e.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
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
func rootOutcome(ctx context.Context, out *rootInfo, err error, t *ioErrors) (*rootInfo, error) {
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
		return &rootInfo{Unreadable: true}, nil
	}
	return nil, fmt.Errorf("read the root: %w", err)
}

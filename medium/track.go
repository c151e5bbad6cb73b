package medium

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry/remote"
)

// ioErrors keeps the first error the medium itself returned while a bundle was read: an I/O
// error, a network failure, a server error. The bundle reader turns such errors into checks
// (a tar that stops is "truncated"), so without this a flaky bucket would look like a damaged
// bundle; with it, Read returns an *Error, and the agent knows to retry rather than reject.
type ioErrors struct {
	mu  sync.Mutex
	err error
}

// note keeps err if it is the medium failing: not the end of a file, and not a file that is
// not there (a missing blob or part is the bundle's fault, and its own check).
func (t *ioErrors) note(err error) {
	if err == nil || err == io.EOF || errors.Is(err, fs.ErrNotExist) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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

// ctxReader stops reading once ctx ends: every Read checks it first, and a Read that failed
// meanwhile returns ctx's error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if err != nil && r.ctx.Err() != nil {
		return n, r.ctx.Err()
	}
	return n, err
}

// interruptible makes a Read blocked on f (a pipe, a device) return once ctx ends, where the
// file supports deadlines (a regular file does not block: ctxReader suffices). The returned
// function stops watching ctx.
func interruptible(ctx context.Context, f *os.File) func() bool {
	return context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
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
	ctx  context.Context
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
	return trackedFile{File: file, ctx: f.ctx, t: f.t}, nil
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
	ctx context.Context
	t   *ioErrors
}

func (f trackedFile) Read(p []byte) (int, error) {
	n, err := ctxReader{f.ctx, f.File}.Read(p)
	f.t.note(err)
	return n, err
}

// layoutFiles is a layout directory as bundle.ReadFiles reads it (like bundle.ReadLayout: no
// name or link leads out of the directory), with its I/O errors noted.
type layoutFiles struct {
	ctx  context.Context
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
	}{trackedReader{ctxReader{l.ctx, f}, l.t}, f}, nil
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

// Error is a read that failed because the medium did: an I/O error, a network failure, a server
// error (5xx, 429) happened while the bundle was read. What the bundle reader made of the
// broken stream (a truncated tar, a missing part) is kept in Verdict but is not the bundle's
// fault, so Error does not unwrap to it: errors.As(err, *bundle.Error) does not find it, and a
// caller retries instead of rejecting.
type Error struct {
	// Location names where the bundle was read from.
	Location string
	// Err is the medium's first failure.
	Err error
	// Verdict is the error the bundle reader returned.
	Verdict error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: the medium failed: %v (the read stopped with: %v)", e.Location, e.Err, e.Verdict)
}

// Unwrap returns the medium's failure.
func (e *Error) Unwrap() error { return e.Err }

// AsError returns the medium failure in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// outcome returns err as it is, or as an *Error if the medium failed while it was read.
func (t *ioErrors) outcome(loc Location, err error) error {
	if err == nil {
		return nil
	}
	if m := t.get(); m != nil {
		return &Error{Location: loc.String(), Err: m, Verdict: err}
	}
	return err
}

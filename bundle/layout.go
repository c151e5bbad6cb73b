package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// Layout is an OCI image layout directory used as a content store: Fetch, Exists and Push,
// the verbs of oras-go's content.Storage, so oras.Copy can move graphs into and out of it.
// Every blob is verified while it is written and while it is read.
type Layout struct {
	dir string
}

// NewLayout makes dir (if needed) an OCI image layout with no index yet.
func NewLayout(dir string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, blobsDir, "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("bundle layout %s: %w", dir, err)
	}
	if err := writeFileSync(filepath.Join(dir, LayoutFile), []byte(LayoutFileContent)); err != nil {
		return nil, fmt.Errorf("bundle layout %s: %w", dir, err)
	}
	return &Layout{dir: dir}, nil
}

// OpenLayout opens an existing layout directory as a store, for reading and adding blobs.
func OpenLayout(dir string) (*Layout, error) {
	if _, err := os.Stat(filepath.Join(dir, LayoutFile)); err != nil {
		return nil, fmt.Errorf("bundle layout %s: %w", dir, err)
	}
	return &Layout{dir: dir}, nil
}

// Dir returns the layout's directory.
func (l *Layout) Dir() string { return l.dir }

func (l *Layout) blobPath(desc ocispec.Descriptor) (string, error) {
	if !validDigest(desc.Digest) {
		return "", errorf("", "", CheckFormat, fixRepack, "descriptor digest %q is not sha256 with 64 lowercase hex characters", desc.Digest)
	}
	return filepath.Join(l.dir, blobsDir, "sha256", desc.Digest.Encoded()), nil
}

// Exists reports whether the layout holds the blob with the descriptor's size.
func (l *Layout) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	p, err := l.blobPath(desc)
	if err != nil {
		return false, err
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fi.Mode().IsRegular() && fi.Size() == desc.Size, nil
}

// Fetch opens a blob (errdef.ErrNotFound for one the layout lacks); reading it checks its
// size and digest, returning io.EOF only once both hold.
func (l *Layout) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	p, err := l.blobPath(desc)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdef.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{newVerifier(f, desc, ""), f}, nil
}

// Push writes a blob, verifying its size and digest while writing; nothing is visible under
// its name unless it verified. Pushing a blob the layout holds is a no-op.
func (l *Layout) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if ok, err := l.Exists(ctx, desc); err != nil || ok {
		return err
	}
	v := newVerifier(r, desc, "")
	if err := l.writeBlob(desc, v); err != nil {
		return err
	}
	return nil
}

// writeBlob copies r into a temporary file, syncs it and renames it into place. r must fail
// unless its bytes verify (a verifier, or a Visitor's reader).
func (l *Layout) writeBlob(desc ocispec.Descriptor, r io.Reader) error {
	p, err := l.blobPath(desc)
	if err != nil {
		return err
	}
	tmp, err := tempFile(filepath.Join(l.dir, blobsDir))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// WriteIndex writes index.json with the given bytes, atomically and durably. It is the last
// write of a layout: a layout with an index.json is complete.
func (l *Layout) WriteIndex(data []byte) error {
	if err := syncDir(filepath.Join(l.dir, blobsDir, "sha256")); err != nil {
		return err
	}
	return writeFileSync(filepath.Join(l.dir, IndexFile), data)
}

// writeFileSync writes a file through a synced temporary file and a rename, then syncs the folder.
func writeFileSync(path string, data []byte) error {
	return WriteFileAtomic(path, bytes.NewReader(data))
}

// WriteFileAtomic writes what r yields to path through a hidden temporary file in the same
// folder (".tmp-…", which a drop directory ignores), synced and renamed into place once r
// ended, then syncs the folder: path never holds a partial file, and a crash leaves the old one.
func WriteFileAtomic(path string, r io.Reader) error {
	tmp, err := tempFile(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func tempFile(dir string) (*os.File, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, ".tmp-"+hex.EncodeToString(b)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// ErrNotFound is returned (wrapped, with the blob's digest) for a blob the cache does not hold.
// It is oras-go's errdef.ErrNotFound; a missing file also matches fs.ErrNotExist.
var ErrNotFound = errdef.ErrNotFound

// ErrDamaged is returned (wrapped, with the blob's digest) for a blob whose bytes on disk are
// not the ones its descriptor names: a size that differs, or a digest that does not match
// (that error also matches oras-go's content.ErrMismatchedDigest). 'sync fsck --quarantine'
// moves such a blob aside.
var ErrDamaged = errors.New("damaged blob")

// Blob is a blob of the cache, open for reading. It is an io.ReadSeeker and io.ReaderAt of
// exactly the descriptor's size, as http.ServeContent needs for Range requests.
//
// Read verifies: while the blob is read in order from its start, its bytes are hashed, and the
// Read that would complete the blob returns an error wrapping ErrDamaged instead of its bytes
// when the digest does not match, so a consumer never receives the whole of a damaged blob.
// Seeking back to the start begins verification afresh. ReadAt, and Read after a Seek away
// from the start, return the bytes as they are on disk: a part of a blob cannot be checked
// against the blob's digest.
type Blob struct {
	f    *os.File
	sr   *io.SectionReader
	desc ocispec.Descriptor
	// h hashes what Read returned in order from offset 0 (hashed bytes); nil once a Read did
	// not continue where the last one stopped.
	h      hash.Hash
	hashed int64
	// err is the verification's failure, returned by every Read once it happened.
	err error
}

// openBlob opens the blob desc names in the cache's blobs folder. The file's size must be the
// descriptor's: a blob of another size is damaged and refused before any byte is read.
func (c *Cache) openBlob(_ context.Context, desc ocispec.Descriptor) (*Blob, error) {
	if desc.Digest.Validate() != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("blob %q: not a sha256 digest: %w", desc.Digest, ErrNotFound)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("blob %s: size %d: %w", desc.Digest, desc.Size, content.ErrInvalidDescriptorSize)
	}
	f, err := os.Open(c.blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w: %w", desc.Digest, ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != desc.Size {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w: %d bytes on disk, the descriptor says %d (run 'sync fsck')", desc.Digest, ErrDamaged, fi.Size(), desc.Size)
	}
	return &Blob{f: f, sr: io.NewSectionReader(f, 0, desc.Size), desc: desc, h: sha256.New()}, nil
}

// Descriptor returns the descriptor the blob was opened with.
func (b *Blob) Descriptor() ocispec.Descriptor { return b.desc }

// Size returns the blob's size.
func (b *Blob) Size() int64 { return b.desc.Size }

// Read reads the blob in order, verifying it (see Blob).
func (b *Blob) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	off, _ := b.sr.Seek(0, io.SeekCurrent)
	n, err := b.sr.Read(p)
	if b.h == nil || off != b.hashed {
		b.h = nil
		err = b.short(off+int64(n), err)
		if err != nil && err != io.EOF {
			b.err = err
		}
		return n, err
	}
	b.h.Write(p[:n])
	b.hashed += int64(n)
	if b.hashed == b.desc.Size {
		if got := digest.Digest("sha256:" + hex.EncodeToString(b.h.Sum(nil))); got != b.desc.Digest {
			b.err = fmt.Errorf("blob %s: %w: %w: read %s (run 'sync fsck')", b.desc.Digest, ErrDamaged, content.ErrMismatchedDigest, got)
			return 0, b.err
		}
		b.h = nil // verified; reading on returns io.EOF
		return n, io.EOF
	}
	if err := b.short(b.hashed, err); err != nil {
		b.err = err
		return n, err
	}
	return n, nil
}

// short turns an io.EOF before the blob's end (its file shrank) into an error wrapping ErrDamaged.
func (b *Blob) short(at int64, err error) error {
	if err == io.EOF && at < b.desc.Size {
		return fmt.Errorf("blob %s: %w: ends after %d of %d bytes (run 'sync fsck'): %w", b.desc.Digest, ErrDamaged, at, b.desc.Size, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
	}
	return err
}

// Seek sets where the next Read starts. Seeking to the start begins verification afresh.
func (b *Blob) Seek(offset int64, whence int) (int64, error) {
	pos, err := b.sr.Seek(offset, whence)
	if err == nil && pos == 0 && b.err == nil {
		b.h, b.hashed = sha256.New(), 0
	}
	return pos, err
}

// ReadAt reads the bytes at off as they are on disk, unverified (see Blob).
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.sr.ReadAt(p, off)
	return n, b.short(off+int64(n), err)
}

// Err returns the verification failure a Read met, if any: a consumer that cannot see Read's
// errors (http.ServeContent) asks afterwards.
func (b *Blob) Err() error { return b.err }

// Close closes the blob's file.
func (b *Blob) Close() error { return b.f.Close() }

// readAll reads a blob whole, verified, if its descriptor's size is at most limit.
func readAll(ctx context.Context, open func(context.Context, ocispec.Descriptor) (*Blob, error), desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes, at most %d: %w", desc.Digest, desc.Size, limit, errdef.ErrSizeExceedsLimit)
	}
	b, err := open(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	buf := make([]byte, desc.Size)
	// Read in order from the start: the Read returning the last bytes verified them.
	if _, err := io.ReadFull(b, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

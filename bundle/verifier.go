package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// validDigest reports whether d is a v1 digest: sha256 and 64 lowercase hex characters.
func validDigest(d digest.Digest) bool {
	s := string(d)
	if len(s) != len("sha256:")+64 || s[:7] != "sha256:" {
		return false
	}
	for _, c := range s[7:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// digestOf returns the sha256 digest of b.
func digestOf(b []byte) digest.Digest {
	sum := sha256.Sum256(b)
	return digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// verifier reads exactly desc.Size bytes from r, hashing them, and returns io.EOF only once
// they hash to desc.Digest. It never returns a byte past the declared size: a longer source
// is an error, as are a shorter one and a different digest. Errors name item and blob.
type verifier struct {
	r    io.Reader
	desc ocispec.Descriptor
	item string
	h    hash.Hash
	n    int64
	err  error
	done bool
	// progress, when set, is told of every byte read.
	progress func(n int64)
}

func newVerifier(r io.Reader, desc ocispec.Descriptor, item string) *verifier {
	return &verifier{r: r, desc: desc, item: item, h: sha256.New()}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.done {
		return 0, io.EOF
	}
	// Ask for one byte more than remains, to see a source longer than declared.
	if remaining := v.desc.Size - v.n; int64(len(p)) > remaining+1 {
		p = p[:remaining+1]
	}
	n, err := v.r.Read(p)
	if n > 0 && v.progress != nil {
		v.progress(int64(n))
	}
	if v.n+int64(n) > v.desc.Size {
		n = int(v.desc.Size - v.n)
		v.h.Write(p[:n])
		v.n += int64(n)
		v.err = errorf(v.item, v.desc.Digest, CheckSize, fixRecopy, "longer than the declared %d bytes", v.desc.Size)
		return n, v.err
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case err == io.EOF:
		return n, v.finish()
	case errors.Is(err, io.ErrUnexpectedEOF):
		v.err = errorf(v.item, v.desc.Digest, CheckTruncated, fixRecopy, "ends after %d of %d bytes", v.n, v.desc.Size)
		return n, v.err
	case err != nil:
		v.err = err
		return n, err
	}
	return n, nil
}

func (v *verifier) finish() error {
	if v.n < v.desc.Size {
		v.err = errorf(v.item, v.desc.Digest, CheckTruncated, fixRecopy, "ends after %d of %d bytes", v.n, v.desc.Size)
		return v.err
	}
	got := digest.Digest("sha256:" + hex.EncodeToString(v.h.Sum(nil)))
	if got != v.desc.Digest {
		v.err = errorf(v.item, v.desc.Digest, CheckDigest, fixRecopy, "digest mismatch: read %s", got)
		return v.err
	}
	v.done = true
	return io.EOF
}

// drain reads what the consumer left, so the digest is checked even if the consumer stopped
// at the last byte without seeing io.EOF. It returns nil only for a verified blob.
func (v *verifier) drain() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	if !v.done {
		return errorf(v.item, v.desc.Digest, CheckDigest, fixRecopy, "not verified")
	}
	return nil
}

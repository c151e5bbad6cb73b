package medium

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
)

// Upload buffers: a part up to bufferedPartMax bytes is read into one reused buffer and sent
// in a single PUT; a larger part streams through minio-go's multipart upload, which holds one
// buffer of at least streamBufferMin bytes. Memory never depends on the bundle's size.
const (
	bufferedPartMax = 16 << 20
	streamBufferMin = 16 << 20
	maxUploadParts  = 10_000 // S3's limit on the pieces of one multipart upload
)

// partUploader cuts a tar into parts of partSize bytes and uploads each as an object.
type partUploader struct {
	client   *minio.Client
	loc      s3Location
	name     string
	partSize int64
	buf      []byte // for buffered parts, allocated once
	// current is the part being written.
	current string
}

func newPartUploader(client *minio.Client, loc s3Location, name string, partSize int64) *partUploader {
	return &partUploader{client: client, loc: loc, name: name, partSize: partSize}
}

// upload reads r to its end, uploading parts in order, and returns the part list (as
// bundle.Split would describe the same bytes). Errors name the part's object.
func (u *partUploader) upload(ctx context.Context, r io.Reader) (*bundle.PartList, error) {
	list := &bundle.PartList{Format: bundle.PartsFormat, PartSize: u.partSize}
	whole := sha256.New()
	r = io.TeeReader(r, whole)
	for i := 1; ; i++ {
		u.current = bundle.PartName(u.name, i)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", u.loc.url(u.current), err)
		}
		part, err := u.uploadPart(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("%s: upload: %w", u.loc.url(u.current), err)
		}
		if part == nil {
			break
		}
		part.Name = u.current
		list.Parts = append(list.Parts, *part)
		list.Size += part.Size
		if part.Size < u.partSize {
			break
		}
	}
	if len(list.Parts) == 0 {
		return nil, fmt.Errorf("%s: the bundle's tar is empty", u.loc.url(u.name))
	}
	list.Digest = sumDigest(whole)
	return list, nil
}

// uploadPart uploads the next partSize bytes of r (fewer at its end) as the object u.current.
// It returns nil, and writes nothing, when r is already at its end.
func (u *partUploader) uploadPart(ctx context.Context, r io.Reader) (*bundle.Part, error) {
	var first [1]byte
	if n, err := io.ReadFull(r, first[:]); n == 0 {
		if err == io.EOF {
			return nil, nil
		}
		return nil, err
	}
	h := sha256.New()
	h.Write(first[:])
	key := u.loc.key(u.current)
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if u.partSize <= bufferedPartMax {
		if u.buf == nil {
			u.buf = make([]byte, u.partSize)
		}
		u.buf[0] = first[0]
		n, err := io.ReadFull(r, u.buf[1:])
		if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		data := u.buf[:1+n]
		h.Write(data[1:])
		if _, err := u.client.PutObject(ctx, u.loc.bucket, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
			return nil, err
		}
		return &bundle.Part{Size: int64(len(data)), Digest: sumDigest(h)}, nil
	}
	// Larger parts stream: the size is unknown until the tar ends, so minio-go uploads in pieces.
	opts.PartSize = uint64(max(streamBufferMin, (u.partSize+maxUploadParts-1)/maxUploadParts))
	body := &countingReader{r: io.TeeReader(io.LimitReader(r, u.partSize-1), h)}
	if _, err := u.client.PutObject(ctx, u.loc.bucket, key, io.MultiReader(bytes.NewReader(first[:]), body), -1, opts); err != nil {
		if body.err != nil {
			return nil, body.err // the tar's own error, not the bucket's
		}
		return nil, err
	}
	return &bundle.Part{Size: 1 + body.n, Digest: sumDigest(h)}, nil
}

// countingReader counts the bytes read and keeps the first read error but io.EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

func sumDigest(h hash.Hash) digest.Digest {
	return digest.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

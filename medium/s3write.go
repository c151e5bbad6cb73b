package medium

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
)

// errStopped ends the tar stream when one of its writers stopped first.
var errStopped = errors.New("write stopped")

// s3Writer writes a tar stream into a bucket as bundle.Split would write it into a folder:
// prefix/NAME.part-NNNNN, then prefix/NAME.parts.json.
type s3Writer struct {
	client   *minio.Client
	loc      s3Location
	name     string
	partSize int64
}

// newS3Writer checks where the parts go before any byte moves.
func newS3Writer(client *minio.Client, bucket, prefix, name string, partSize int64) (*s3Writer, error) {
	loc, err := newS3Location(bucket, prefix)
	if err != nil {
		return nil, err
	}
	if err := checkBundleName(name); err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	if partSize <= 0 {
		return nil, fmt.Errorf("%s: part size %d must be positive", loc.url(name), partSize)
	}
	return &s3Writer{client: client, loc: loc, name: name, partSize: partSize}, nil
}

// write uploads the tar r yields. It removes an existing part list first (a part list present
// means every part is), uploads the parts in order and the part list last, then removes parts
// numbered past the new last one. If r fails (the bundle is not complete) or the bucket does,
// it leaves no part list and removes the parts it wrote; an error of r is named as the bundle
// source's, at the part being written.
func (w *s3Writer) write(ctx context.Context, r io.Reader, source string) (*bundle.PartList, error) {
	listName := bundle.PartListName(w.name)
	if err := w.client.RemoveObject(ctx, w.loc.bucket, w.loc.key(listName), minio.RemoveObjectOptions{}); err != nil {
		return nil, fmt.Errorf("%s: remove the previous part list: %w", w.loc.url(listName), err)
	}
	src := &sourceReader{r: r}
	up := newPartUploader(w.client, w.loc, w.name, w.partSize)
	list, err := up.upload(ctx, src)
	if src.err != nil {
		up.removeParts(ctx, 0)
		return nil, fmt.Errorf("%s: bundle %s: %w", w.loc.url(up.current), source, src.err)
	}
	if err != nil {
		up.removeParts(ctx, 0)
		return nil, err
	}
	data, err := list.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.loc.url(listName), err)
	}
	if _, err := w.client.PutObject(ctx, w.loc.bucket, w.loc.key(listName), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		up.removeParts(ctx, 0)
		return nil, fmt.Errorf("%s: upload: %w", w.loc.url(listName), err)
	}
	up.removeParts(ctx, len(list.Parts)) // an older, longer bundle of this name left these
	return list, nil
}

// sourceReader keeps the first error of the stream it reads but io.EOF: the tar's own failure,
// told from the bucket's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

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

// errStopped ends the tar writer when uploading stopped first.
var errStopped = errors.New("upload stopped")

// WriteS3 streams the bundle in layoutDir as its tar into bucket as bundle.Split would write it: prefix/NAME.part-NNNNN, then prefix/NAME.parts.json.
func WriteS3(ctx context.Context, layoutDir string, client *minio.Client, bucket, prefix, name string, partSize int64, opts ...bundle.ReadOption) (*bundle.PartList, error) {
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
	listName := bundle.PartListName(name)
	// A part list present means every part is: drop an older list before any part changes.
	if err := client.RemoveObject(ctx, loc.bucket, loc.key(listName), minio.RemoveObjectOptions{}); err != nil {
		return nil, fmt.Errorf("%s: remove the previous part list: %w", loc.url(listName), err)
	}

	// The tar streams from bundle.WriteTar (given opts; it verifies every blob as it reads it)
	// through a pipe into the parts: nothing of it is kept on disk.
	pr, pw := io.Pipe()
	tarDone := make(chan error, 1)
	go func() {
		_, err := bundle.WriteTar(ctx, pw, layoutDir, opts...)
		pw.CloseWithError(err) // nil: the reader sees io.EOF
		tarDone <- err
	}()
	up := newPartUploader(client, loc, name, partSize)
	list, upErr := up.upload(ctx, pr)
	pr.CloseWithError(errStopped) // unblocks the writer if the upload stopped early
	tarErr := <-tarDone

	if tarErr != nil && !errors.Is(tarErr, errStopped) {
		up.removeParts(ctx, 0)
		return nil, fmt.Errorf("%s: bundle %s: %w", loc.url(up.current), layoutDir, tarErr)
	}
	if upErr != nil {
		up.removeParts(ctx, 0)
		return nil, upErr
	}
	data, err := list.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc.url(listName), err)
	}
	if _, err := client.PutObject(ctx, loc.bucket, loc.key(listName), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		up.removeParts(ctx, 0)
		return nil, fmt.Errorf("%s: upload: %w", loc.url(listName), err)
	}
	up.removeParts(ctx, len(list.Parts)) // an older, longer bundle of this name left these
	return list, nil
}

package medium

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/minio/minio-go/v7"
)

// S3FS returns a read-only fs.FS of the objects under prefix in bucket, for bundle.ReadParts; its requests use ctx.
func S3FS(ctx context.Context, client *minio.Client, bucket, prefix string) fs.FS {
	loc, err := newS3Location(bucket, prefix)
	return &s3FS{ctx: ctx, client: client, loc: loc, err: err}
}

// s3FS opens objects as files. It has no directories: Open(".") is refused like any name that
// is not a plain path.
type s3FS struct {
	ctx    context.Context
	client *minio.Client
	loc    s3Location
	err    error // the location's, reported by every Open
}

// errNoObject is a missing object: fs.ErrNotExist, in the bucket's words.
var errNoObject = fmt.Errorf("no such object: %w", fs.ErrNotExist)

// Open stats the object name under the prefix and returns a file whose Read streams it. The
// file reads the version that was stat'ed: an object replaced meanwhile fails to read.
func (f *s3FS) Open(name string) (fs.File, error) {
	if f.err != nil {
		return nil, f.err
	}
	if !plainPath(name) {
		return nil, fmt.Errorf("%s: open %q: not a plain path: %w", f.loc, name, fs.ErrInvalid)
	}
	url, key := f.loc.url(name), f.loc.key(name)
	info, err := f.client.StatObject(f.ctx, f.loc.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, objectError(err))
	}
	var opts minio.GetObjectOptions
	if info.ETag != "" {
		if err := opts.SetMatchETag(info.ETag); err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
	}
	obj, err := f.client.GetObject(f.ctx, f.loc.bucket, key, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, objectError(err))
	}
	return &s3File{obj: obj, url: url, info: objectInfo{name: path.Base(name), size: info.Size, mod: info.LastModified}}, nil
}

// objectError maps a missing object to fs.ErrNotExist and keeps any other error.
func objectError(err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound {
		return errNoObject
	}
	return err
}

// s3File streams one object.
type s3File struct {
	obj  *minio.Object
	url  string
	info objectInfo
}

// Stat returns what Open learned: the object's base name, size and time.
func (f *s3File) Stat() (fs.FileInfo, error) { return f.info, nil }

// Read streams the object; errors but io.EOF name it.
func (f *s3File) Read(p []byte) (int, error) {
	n, err := f.obj.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: read: %w", f.url, objectError(err))
	}
	return n, err
}

// Close ends the object's stream.
func (f *s3File) Close() error { return f.obj.Close() }

// objectInfo is an object as fs.FileInfo: a read-only regular file.
type objectInfo struct {
	name string
	size int64
	mod  time.Time
}

func (i objectInfo) Name() string       { return i.name }
func (i objectInfo) Size() int64        { return i.size }
func (i objectInfo) Mode() fs.FileMode  { return 0o444 }
func (i objectInfo) ModTime() time.Time { return i.mod }
func (i objectInfo) IsDir() bool        { return false }
func (i objectInfo) Sys() any           { return nil }

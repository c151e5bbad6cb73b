package pack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2/registry"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/medium"
)

// S3Target is a bucket and prefix on an S3-compatible endpoint.
type S3Target struct {
	Endpoint string
	Bucket   string
	Prefix   string
	// Insecure uses plain HTTP.
	Insecure bool
	// PartSize is the size of the parts uploaded (default 1 GiB).
	PartSize int64
}

// Outputs are where a packed bundle is written besides its directory.
type Outputs struct {
	// Tar is a tar file to write; with PartSize, the parts and part list named after it instead.
	Tar      string
	PartSize int64
	S3       *S3Target
	// Registry is an OCI repository and tag to push to (host/path:tag).
	Registry  string
	PlainHTTP []string
}

// WriteOutputs writes the bundle in res.Dir to every output and returns a line for each.
func WriteOutputs(ctx context.Context, res *Result, out Outputs) ([]string, error) {
	var written []string
	name := fmt.Sprintf("bundle-%d.tar", res.Bundle.Sequence)
	if out.Tar != "" {
		if err := os.MkdirAll(filepath.Dir(out.Tar), 0o755); err != nil {
			return nil, err
		}
		if out.PartSize > 0 {
			list, err := splitTar(ctx, res.Dir, out.Tar, out.PartSize)
			if err != nil {
				return nil, err
			}
			written = append(written, fmt.Sprintf("%s (%d parts)", filepath.Join(filepath.Dir(out.Tar), bundle.PartListName(filepath.Base(out.Tar))), len(list.Parts)))
		} else {
			if _, err := bundle.WriteTarFile(ctx, res.Dir, out.Tar); err != nil {
				return nil, err
			}
			written = append(written, out.Tar)
		}
	}
	if t := out.S3; t != nil {
		client, err := medium.NewS3Client(t.Endpoint, t.Insecure)
		if err != nil {
			return nil, err
		}
		size := t.PartSize
		if size <= 0 {
			size = 1 << 30
		}
		list, err := medium.WriteS3(ctx, res.Dir, client, t.Bucket, t.Prefix, name, size)
		if err != nil {
			return nil, err
		}
		written = append(written, fmt.Sprintf("s3://%s/%s (%d parts)", t.Bucket, strings.TrimPrefix(t.Prefix+"/"+bundle.PartListName(name), "/"), len(list.Parts)))
	}
	if out.Registry != "" {
		ref, err := registry.ParseReference(out.Registry)
		if err != nil || ref.Reference == "" {
			return nil, fmt.Errorf("--registry %q: want host/repository:tag", out.Registry)
		}
		repo, err := medium.NewRepository(ref.Registry+"/"+ref.Repository, contains(out.PlainHTTP, ref.Registry))
		if err != nil {
			return nil, err
		}
		if _, err := medium.PushRegistry(ctx, res.Dir, repo, ref.Reference); err != nil {
			return nil, err
		}
		written = append(written, out.Registry+"@"+string(res.Root.Digest))
	}
	return written, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// splitTar streams the bundle's tar into parts next to path, never writing the whole tar.
func splitTar(ctx context.Context, dir, path string, partSize int64) (*bundle.PartList, error) {
	pr, pw := io.Pipe()
	go func() {
		_, err := bundle.WriteTar(ctx, pw, dir)
		pw.CloseWithError(err)
	}()
	list, err := bundle.Split(ctx, pr, filepath.Dir(path), filepath.Base(path), partSize)
	pr.CloseWithError(err)
	if err != nil {
		return nil, fmt.Errorf("parts of %s: %w", path, err)
	}
	return list, nil
}

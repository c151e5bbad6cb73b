package medium

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2/registry"

	"github.com/ferry-gitops/ferry/bundle"
)

// OpenOptions say how to reach the network media named by a source.
type OpenOptions struct {
	// S3Endpoint is the S3-compatible endpoint (host:port) of s3:// sources; S3Insecure uses HTTP.
	S3Endpoint string
	S3Insecure bool
	// PlainHTTP lists registry hosts reached over plain HTTP.
	PlainHTTP []string
}

// Read reads and verifies the bundle a source names, whatever medium it is on:
//
//	DIR                               a bundle layout directory
//	FILE.tar                          a bundle tar
//	DIR/NAME.parts.json               a part list and its parts beside it
//	s3://bucket/prefix/NAME.parts.json  parts in a bucket
//	oci://host/repository:tag         a bundle in an OCI registry
//
// Every blob is hashed once while it is read; opts add limits, a delta's base and a visitor.
func Read(ctx context.Context, src string, o OpenOptions, opts ...bundle.ReadOption) (*bundle.Result, error) {
	switch {
	case strings.HasPrefix(src, "s3://"):
		u, err := url.Parse(src)
		if err != nil || u.Host == "" || !strings.HasSuffix(u.Path, ".parts.json") {
			return nil, fmt.Errorf("%s: want s3://bucket/prefix/NAME.parts.json", src)
		}
		client, err := NewS3Client(o.S3Endpoint, o.S3Insecure)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		key := strings.TrimPrefix(u.Path, "/")
		return bundle.ReadParts(ctx, S3FS(ctx, client, u.Host, path.Dir(key)), path.Base(key), opts...)
	case strings.HasPrefix(src, "oci://"):
		ref, err := registry.ParseReference(strings.TrimPrefix(src, "oci://"))
		if err != nil || ref.Reference == "" {
			return nil, fmt.Errorf("%s: want oci://host/repository:tag", src)
		}
		repo, err := NewRepository(ref.Registry+"/"+ref.Repository, contains(o.PlainHTTP, ref.Registry))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return ReadRegistry(ctx, repo, ref.Reference, opts...)
	case strings.HasSuffix(src, ".parts.json"):
		root, err := os.OpenRoot(filepath.Dir(src))
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return bundle.ReadParts(ctx, root.FS(), filepath.Base(src), opts...)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return bundle.ReadLayout(ctx, src, opts...)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bundle.ReadTar(ctx, f, opts...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package medium

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
)

// listS3 returns the names of the part lists (NAME.parts.json) directly under prefix in bucket, sorted.
func listS3(ctx context.Context, client *minio.Client, bucket, prefix string) ([]string, error) {
	loc, err := newS3Location(bucket, prefix)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx) // stops the listing if we return early
	defer cancel()
	suffix := bundle.PartListName("")
	names := []string{}
	// Not recursive: a part list names its parts relative to its own folder, which S3FS
	// at this prefix reads only for lists directly under it.
	for obj := range client.ListObjects(ctx, loc.bucket, minio.ListObjectsOptions{Prefix: loc.dir()}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("%s: list: %w", loc, obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, loc.dir())
		if len(name) > len(suffix) && strings.HasSuffix(name, suffix) && !strings.Contains(name, "/") && plainPath(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

package medium

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
)

// MaxListedObjects bounds the objects a bucket source's listing may return under its prefix
// (part lists, parts and anything else there): a bucket that lists without end is refused, not
// read forever.
const MaxListedObjects = 100_000

// listS3 returns the names of the part lists (NAME.parts.json) directly under prefix in bucket,
// sorted, reading at most max objects of the listing.
func listS3(ctx context.Context, client *minio.Client, bucket, prefix string, max int) ([]string, error) {
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
	seen := 0
	for obj := range client.ListObjects(ctx, loc.bucket, minio.ListObjectsOptions{Prefix: loc.dir()}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("%s: list: %w", loc, obj.Err)
		}
		if seen++; seen > max {
			return nil, fmt.Errorf("%s: list: more than %d objects under the prefix; a source's prefix holds bundles' part lists and parts only (remove old bundles, or give each site its own prefix)", loc, max)
		}
		name := strings.TrimPrefix(obj.Key, loc.dir())
		if len(name) > len(suffix) && strings.HasSuffix(name, suffix) && !strings.Contains(name, "/") && plainPath(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

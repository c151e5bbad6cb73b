package medium

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
)

// removeParts deletes the objects NAME.part-N under the prefix with N > keep: parts that no
// part list describes, left by a failed upload (keep 0) or an older, longer bundle of the same
// name. It is best effort, and runs even once ctx is done.
func (u *partUploader) removeParts(ctx context.Context, keep int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var stale []string
	for obj := range u.client.ListObjects(ctx, u.loc.bucket, minio.ListObjectsOptions{Prefix: u.loc.key(u.name + ".part-")}) {
		if obj.Err != nil {
			break
		}
		if n, ok := partNumber(strings.TrimPrefix(obj.Key, u.loc.dir()), u.name); ok && n > keep {
			stale = append(stale, obj.Key)
		}
	}
	for _, key := range stale {
		_ = u.client.RemoveObject(ctx, u.loc.bucket, key, minio.RemoveObjectOptions{})
	}
}

// partNumber returns N when file is exactly bundle.PartName(name, N).
func partNumber(file, name string) (int, bool) {
	digits, ok := strings.CutPrefix(file, name+".part-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || bundle.PartName(name, n) != file {
		return 0, false
	}
	return n, true
}

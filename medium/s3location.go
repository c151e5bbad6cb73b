package medium

import (
	"fmt"
	"io/fs"
	"strings"
)

// s3Location is a bucket and a key prefix: where a bundle's objects live.
type s3Location struct {
	bucket string
	// prefix has no leading or trailing slash; "" is the top of the bucket.
	prefix string
}

// newS3Location checks bucket and prefix; slashes around the prefix are dropped, and "." (what
// path.Dir gives for a key with no folder) is the top of the bucket.
func newS3Location(bucket, prefix string) (s3Location, error) {
	loc := s3Location{bucket: bucket, prefix: strings.Trim(prefix, "/")}
	if loc.prefix == "." {
		loc.prefix = ""
	}
	if bucket == "" {
		return loc, fmt.Errorf("%s: no bucket named", loc)
	}
	if loc.prefix != "" && !plainPath(loc.prefix) {
		return loc, fmt.Errorf("%s: prefix %q is not a plain path (no empty, \".\" or \"..\" elements)", loc, prefix)
	}
	return loc, nil
}

// plainPath reports whether p is a valid fs path that cannot climb: no "..", no ".".
func plainPath(p string) bool {
	return fs.ValidPath(p) && p != "." && !strings.Contains(p, "..")
}

// key returns the object key of name under the prefix.
func (l s3Location) key(name string) string {
	if l.prefix == "" {
		return name
	}
	return l.prefix + "/" + name
}

// dir returns the key prefix of the objects under the prefix: "prefix/", or "".
func (l s3Location) dir() string {
	if l.prefix == "" {
		return ""
	}
	return l.prefix + "/"
}

// url names the object name under the prefix in errors: s3://bucket/prefix/name.
func (l s3Location) url(name string) string { return "s3://" + l.bucket + "/" + l.key(name) }

// String names the location in errors: s3://bucket/prefix.
func (l s3Location) String() string {
	if l.prefix == "" {
		return "s3://" + l.bucket
	}
	return "s3://" + l.bucket + "/" + l.prefix
}

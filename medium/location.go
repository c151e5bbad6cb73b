package medium

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"

	"github.com/ferry-gitops/ferry/bundle"
)

// Kind says what a Location names.
type Kind int

// The kinds of location. The first five hold one bundle (Read, ReadRoot, Write); the last three
// are places bundles arrive at (List).
const (
	// KindLayout is a bundle layout directory (a path that is not FILE.tar or NAME.parts.json).
	KindLayout Kind = iota + 1
	// KindTar is a bundle tar file.
	KindTar
	// KindParts is a part list DIR/NAME.parts.json with its parts beside it.
	KindParts
	// KindS3 is a part list and its parts in a bucket: s3://bucket/prefix/NAME.parts.json.
	KindS3
	// KindRegistry is a bundle tagged in an OCI repository: oci://host/repository:tag.
	KindRegistry
	// KindDropDir is a drop directory: bundle directories, tars and part lists.
	KindDropDir
	// KindS3Prefix is a bucket prefix: every part list directly under it, s3://bucket/prefix.
	KindS3Prefix
	// KindRepository is an OCI repository, every tag a candidate: oci://host/repository.
	KindRepository
)

func (k Kind) String() string {
	switch k {
	case KindLayout:
		return "layout"
	case KindTar:
		return "tar"
	case KindParts:
		return "parts"
	case KindS3:
		return "s3"
	case KindRegistry:
		return "registry"
	case KindDropDir:
		return "dir"
	case KindS3Prefix:
		return "s3 prefix"
	case KindRepository:
		return "repository"
	}
	return fmt.Sprintf("kind %d", int(k))
}

// Location is where a bundle is, or where bundles arrive: one value for every medium, named
// by the grammar Parse reads. A Location is only a name: nothing is checked or reached until a
// verb (Read, ReadRoot, Write, List) uses it, and that verb's errors name it.
type Location struct {
	kind Kind
	// path is the directory, tar file or part list (KindLayout, KindTar, KindParts,
	// KindDropDir).
	path string
	// bucket and prefix (as given) of KindS3 and KindS3Prefix.
	bucket, prefix string
	// name is the bundle's tar name NAME (KindParts, KindS3: the part list is NAME.parts.json).
	name string
	// repository (host/path) and tag of KindRegistry and KindRepository.
	repository, tag string
	// partSize is the size of the parts Write cuts (KindParts, KindS3); see Split.
	partSize int64
	// root is what the tag resolved to when List found it (KindRegistry): ReadRoot reads that
	// root, not whatever the tag names by then.
	root *ocispec.Descriptor
}

// Parse reads a location written as the commands take it:
//
//	DIR                                 a bundle layout directory
//	FILE.tar                            a bundle tar
//	DIR/NAME.parts.json                 a part list and its parts beside it
//	s3://bucket/prefix/NAME.parts.json  parts in a bucket
//	s3://bucket/prefix                  a bucket prefix (to List)
//	oci://host/repository:tag           a bundle in an OCI registry
//	oci://host/repository               a repository (to List)
//
// A path that is neither FILE.tar nor NAME.parts.json is a layout directory; Read reads any
// path that turns out to be a file as a tar, as before.
func Parse(s string) (Location, error) {
	switch {
	case strings.HasPrefix(s, "s3://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return Location{}, fmt.Errorf("%s: want s3://bucket/prefix/NAME.parts.json", s)
		}
		key := strings.TrimPrefix(u.Path, "/")
		if !strings.HasSuffix(key, bundle.PartListName("")) {
			return S3Prefix(u.Host, key), nil
		}
		return S3(u.Host, path.Dir(key), strings.TrimSuffix(path.Base(key), bundle.PartListName(""))), nil
	case strings.HasPrefix(s, "oci://"):
		ref, err := registry.ParseReference(strings.TrimPrefix(s, "oci://"))
		if err != nil {
			return Location{}, fmt.Errorf("%s: want oci://host/repository:tag", s)
		}
		repo := ref.Registry + "/" + ref.Repository
		if ref.Reference == "" {
			return Repository(repo), nil
		}
		return Registry(repo, ref.Reference), nil
	case strings.HasSuffix(s, bundle.PartListName("")):
		return Parts(filepath.Dir(s), strings.TrimSuffix(filepath.Base(s), bundle.PartListName(""))), nil
	case strings.HasSuffix(s, ".tar"):
		return TarFile(s), nil
	}
	return Layout(s), nil
}

// Layout is the bundle layout directory dir.
func Layout(dir string) Location { return Location{kind: KindLayout, path: dir} }

// TarFile is the bundle tar at path, whatever its name.
func TarFile(path string) Location { return Location{kind: KindTar, path: path} }

// Parts is the part list NAME.parts.json in dir, with the parts NAME.part-NNNNN beside it.
func Parts(dir, name string) Location { return Location{kind: KindParts, path: dir, name: name} }

// S3 is the part list NAME.parts.json, with its parts, under prefix in bucket.
func S3(bucket, prefix, name string) Location {
	return Location{kind: KindS3, bucket: bucket, prefix: prefix, name: name}
}

// S3Prefix is the part lists directly under prefix in bucket.
func S3Prefix(bucket, prefix string) Location {
	return Location{kind: KindS3Prefix, bucket: bucket, prefix: prefix}
}

// Registry is the bundle tagged tag in repository (host/path).
func Registry(repository, tag string) Location {
	return Location{kind: KindRegistry, repository: repository, tag: tag}
}

// Repository is every tag of repository (host/path).
func Repository(repository string) Location {
	return Location{kind: KindRepository, repository: repository}
}

// DropDir is a drop directory: bundle directories (holding oci-layout), tar files and part
// lists with their parts beside them. Names starting with "." are ignored, so a copy can be
// written under a hidden name and renamed into place.
func DropDir(dir string) Location { return Location{kind: KindDropDir, path: dir} }

// Split returns the location written as parts of size bytes (KindParts, KindS3).
func (l Location) Split(size int64) Location {
	l.partSize = size
	return l
}

// Kind says what the location names.
func (l Location) Kind() Kind { return l.kind }

// Host is the registry host of a registry location, "" for others.
func (l Location) Host() string {
	host, _, _ := strings.Cut(l.repository, "/")
	return host
}

// Name is the bundle's name at the location: a file name, an object's name, a tag.
func (l Location) Name() string {
	switch l.kind {
	case KindParts, KindS3:
		return bundle.PartListName(l.name)
	case KindRegistry:
		return l.tag
	}
	return filepath.Base(l.path)
}

// String names the location in errors, as Parse reads it; a drop directory is "dir DIR".
func (l Location) String() string {
	switch l.kind {
	case KindLayout, KindTar:
		return l.path
	case KindParts:
		return filepath.Join(l.path, bundle.PartListName(l.name))
	case KindS3:
		return s3Location{bucket: l.bucket, prefix: cleanPrefix(l.prefix)}.url(bundle.PartListName(l.name))
	case KindS3Prefix:
		return s3Location{bucket: l.bucket, prefix: cleanPrefix(l.prefix)}.String()
	case KindRegistry:
		return "oci://" + l.repository + ":" + l.tag
	case KindRepository:
		return "oci://" + l.repository
	case KindDropDir:
		return "dir " + l.path
	}
	return "(no location)"
}

// cleanPrefix is prefix as newS3Location keeps it, for names.
func cleanPrefix(prefix string) string {
	p := strings.Trim(prefix, "/")
	if p == "." {
		return ""
	}
	return p
}

// ErrTagged is a repository named with a tag or digest where only the repository is wanted.
var ErrTagged = errors.New("names a tag or digest")

// CheckRepository checks that repository is host/path, without a tag or digest (ErrTagged).
func CheckRepository(repository string) error {
	ref, err := registry.ParseReference(repository)
	if err != nil {
		return err
	}
	if ref.Reference != "" {
		return ErrTagged
	}
	return nil
}

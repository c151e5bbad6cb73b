package medium

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-gitops/ferry/bundle"
)

// Candidate is one bundle a place offers, as List found it.
type Candidate struct {
	// Location is where the bundle is: Read and ReadRoot take it.
	Location Location
	// Name says what the candidate is there: a file name, a part list's name, a tag.
	Name string
	// ID is the candidate's identity: it changes whenever its bytes may have changed (path,
	// size and modification time of its files; an S3 ETag; a tag's digest).
	ID string
	// Waiting, when set, says what the candidate waits for (parts still missing): it is not
	// complete yet, which is neither an error nor a defect.
	Waiting string
	// Settle is set for candidates with no sign of being complete (a tar, a layout directory):
	// take them only once their ID stayed the same over two listings.
	Settle bool
}

// List returns the bundles a place offers: a drop directory (bundle directories, tars, part
// lists), a bucket prefix (the part lists directly under it: a part list is uploaded after
// its parts, so one listed is complete) or a repository (every tag of an OCI index, but the
// attachments' tags sha256-<hex> and sha256-<hex>.sig). A repository nothing was pushed to yet
// offers nothing. WithLimits bounds the part lists read.
func List(ctx context.Context, loc Location, opts ...Option) ([]Candidate, error) {
	o := makeOptions(opts)
	switch loc.kind {
	case KindDropDir:
		return listDir(loc, o.limits)
	case KindS3Prefix:
		return listS3Prefix(ctx, loc, o)
	case KindRepository:
		return listRepository(ctx, loc, o)
	}
	return nil, fmt.Errorf("%s: not a place to list: want a drop directory, s3://bucket/prefix or oci://host/repository", loc)
}

func listDir(loc Location, lim bundle.Limits) ([]Candidate, error) {
	entries, err := os.ReadDir(loc.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	var out []Candidate
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(loc.path, name)
		fi, err := os.Stat(p)
		if err != nil {
			continue // gone meanwhile, or a dangling link
		}
		switch {
		case fi.Mode().IsRegular() && strings.HasSuffix(name, bundle.PartListName("")) && len(name) > len(bundle.PartListName("")):
			out = append(out, dirParts(loc.path, name, fi, lim))
		case fi.Mode().IsRegular() && strings.HasSuffix(name, ".tar"):
			out = append(out, Candidate{Location: TarFile(p), Name: name, Settle: true,
				ID: fmt.Sprintf("tar %s %d %d", p, fi.Size(), fi.ModTime().UnixNano())})
		case fi.IsDir():
			if c, ok := dirLayout(loc.path, name); ok {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// dirParts is a part list's candidate: waiting until every part is present at its recorded size.
func dirParts(dir, name string, fi os.FileInfo, lim bundle.Limits) Candidate {
	p := filepath.Join(dir, name)
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	c := Candidate{Location: Parts(dir, strings.TrimSuffix(name, bundle.PartListName(""))), Name: name}
	list, err := readPartList(p, lim)
	if err != nil {
		// A part list that does not parse may still be being written: take it (and let the
		// import reject it) only once it stopped changing.
		c.Settle = true
		c.ID = "parts " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
		return c
	}
	present := 0
	for _, part := range list.Parts {
		pfi, err := os.Stat(filepath.Join(dir, part.Name))
		if err != nil || pfi.Size() < part.Size {
			continue
		}
		present++
		if pfi.Size() > part.Size {
			c.Settle = true // too long: rejected, once it stops growing
		}
		fmt.Fprintf(h, "%s %d %d\n", part.Name, pfi.Size(), pfi.ModTime().UnixNano())
	}
	if present < len(list.Parts) {
		c.Waiting = fmt.Sprintf("%d of %d parts present at their recorded size", present, len(list.Parts))
	}
	c.ID = "parts " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
	return c
}

// readPartList reads and parses a part list, bounded by the limits.
func readPartList(p string, lim bundle.Limits) (*bundle.PartList, error) {
	max := lim.MaxPartListSize
	if max <= 0 {
		max = bundle.DefaultMaxPartListSize
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("part list larger than %d bytes", max)
	}
	return bundle.ParsePartList(data, lim)
}

// dirLayout is a bundle directory's candidate, if name holds an oci-layout file: waiting for
// its index.json, then taken once its files stopped changing.
func dirLayout(dir, name string) (Candidate, bool) {
	p := filepath.Join(dir, name)
	lfi, err := os.Stat(filepath.Join(p, bundle.LayoutFile))
	if err != nil || !lfi.Mode().IsRegular() {
		return Candidate{}, false
	}
	c := Candidate{Location: Layout(p), Name: name, Settle: true}
	h := sha256.New()
	ifi, err := os.Stat(filepath.Join(p, bundle.IndexFile))
	if err != nil {
		c.Waiting = "no " + bundle.IndexFile + " yet"
		c.ID = "layout " + p + " no-index"
		return c, true
	}
	fmt.Fprintf(h, "%d %d %d %d\n", lfi.Size(), lfi.ModTime().UnixNano(), ifi.Size(), ifi.ModTime().UnixNano())
	blobs, _ := os.ReadDir(filepath.Join(p, "blobs", "sha256"))
	for _, b := range blobs {
		if info, err := b.Info(); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", b.Name(), info.Size(), info.ModTime().UnixNano())
		}
	}
	c.ID = "layout " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
	return c, true
}

func listS3Prefix(ctx context.Context, loc Location, o *options) ([]Candidate, error) {
	client, err := o.s3()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	names, err := listS3(ctx, client, loc.bucket, loc.prefix, cmp.Or(o.maxListed, MaxListedObjects))
	if err != nil {
		return nil, err
	}
	prefix := cleanPrefix(loc.prefix)
	var out []Candidate
	for _, name := range names {
		key := path.Join(prefix, name)
		info, err := client.StatObject(ctx, loc.bucket, key, minio.StatObjectOptions{})
		if err != nil {
			if minio.ToErrorResponse(err).Code == "NoSuchKey" {
				continue // removed since it was listed
			}
			return nil, fmt.Errorf("%s: stat %s: %w", loc, key, err)
		}
		out = append(out, Candidate{Location: S3(loc.bucket, prefix, strings.TrimSuffix(name, bundle.PartListName(""))), Name: name,
			ID: fmt.Sprintf("s3 %s/%s/%s %s %d", o.s3Endpoint, loc.bucket, key, info.ETag, info.Size)})
	}
	return out, nil
}

// attachmentTag is the tag of a root's attachment: sha256-<hex> (the referrers tag) and
// sha256-<hex>.sig (a tag-based signature).
var attachmentTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\..*)?$`)

func listRepository(ctx context.Context, loc Location, o *options) ([]Candidate, error) {
	repo, err := newRepository(loc, o)
	if err != nil {
		return nil, err
	}
	name := "registry " + loc.repository
	var tags []string
	if err := repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		if len(tags) > MaxTags {
			return fmt.Errorf("more than %d tags: a source repository holds at most %d (remove old bundles' tags)", MaxTags, MaxTags)
		}
		return ctx.Err()
	}); err != nil {
		var resp *errcode.ErrorResponse
		if errors.Is(err, errdef.ErrNotFound) || errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound {
			return nil, nil // no repository yet: nothing pushed
		}
		return nil, fmt.Errorf("%s: list tags: %w", name, err)
	}
	var out []Candidate
	for _, tag := range tags {
		if attachmentTag.MatchString(tag) {
			continue
		}
		desc, err := repo.Resolve(ctx, tag)
		if errors.Is(err, errdef.ErrNotFound) {
			continue // untagged since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("%s: resolve %s: %w", name, tag, err)
		}
		if desc.MediaType != ocispec.MediaTypeImageIndex {
			continue // not a bundle's root
		}
		l := Registry(loc.repository, tag)
		l.root = &ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
		out = append(out, Candidate{Location: l, Name: tag, ID: fmt.Sprintf("registry %s:%s@%s", loc.repository, tag, desc.Digest)})
	}
	return out, nil
}

package agent

import (
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
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/medium"
)

// candidate is one bundle a source offers.
type candidate struct {
	// source is the source's index in the configuration; name says what the candidate is
	// there (a file name, an object key, a tag).
	source int
	name   string
	// id is the candidate's identity: it changes whenever its bytes may have changed (path,
	// size and modification time of its files; an S3 ETag; a tag's digest). A rejected
	// candidate is not tried again until its identity changes.
	id string
	// waiting, when set, says what the candidate waits for (parts still missing): it is not
	// complete yet, which is neither an error nor a rejection.
	waiting string
	// settle is set for candidates with no sign of being complete (a tar, a layout directory):
	// they are taken only once their identity stayed the same over two polls.
	settle bool
	// read reads the whole bundle; root reads only up to its root. Both note the medium's
	// own errors in t.
	read func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error)
	root func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error)
}

// source lists the candidates a place offers.
type source interface {
	String() string
	list(ctx context.Context, lim bundle.Limits) ([]candidate, error)
}

// dirSource is a drop directory: bundle directories (holding oci-layout), tar files, and part
// lists (NAME.parts.json) with their parts beside them. Names starting with "." are ignored, so
// a copy can be written under a hidden name and renamed into place.
type dirSource struct {
	index int
	dir   string
}

func (s *dirSource) String() string { return "dir " + s.dir }

func (s *dirSource) list(_ context.Context, lim bundle.Limits) ([]candidate, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	var out []candidate
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(s.dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			continue // gone meanwhile, or a dangling link
		}
		switch {
		case fi.Mode().IsRegular() && strings.HasSuffix(name, ".parts.json") && len(name) > len(".parts.json"):
			out = append(out, s.parts(name, fi, lim))
		case fi.Mode().IsRegular() && strings.HasSuffix(name, ".tar"):
			out = append(out, candidate{source: s.index, name: name, settle: true,
				id:   fmt.Sprintf("tar %s %d %d", p, fi.Size(), fi.ModTime().UnixNano()),
				read: readTarFile(p), root: rootTarFile(p)})
		case fi.IsDir():
			if c, ok := s.layout(name); ok {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// parts is a part list's candidate: waiting until every part is present at its recorded size.
func (s *dirSource) parts(name string, fi os.FileInfo, lim bundle.Limits) candidate {
	p := filepath.Join(s.dir, name)
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
	c := candidate{source: s.index, name: name, read: readParts(s.dir, name), root: rootParts(s.dir, name)}
	list, err := readPartList(p, lim)
	if err != nil {
		// A part list that does not parse may still be being written: take it (and let the
		// import reject it) only once it stopped changing.
		c.settle = true
		c.id = "parts " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
		return c
	}
	present := 0
	for _, part := range list.Parts {
		pfi, err := os.Stat(filepath.Join(s.dir, part.Name))
		if err != nil || pfi.Size() < part.Size {
			continue
		}
		present++
		if pfi.Size() > part.Size {
			c.settle = true // too long: rejected, once it stops growing
		}
		fmt.Fprintf(h, "%s %d %d\n", part.Name, pfi.Size(), pfi.ModTime().UnixNano())
	}
	if present < len(list.Parts) {
		c.waiting = fmt.Sprintf("%d of %d parts present at their recorded size", present, len(list.Parts))
	}
	c.id = "parts " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
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

// layout is a bundle directory's candidate, if name holds an oci-layout file: waiting for its
// index.json, then taken once its files stopped changing.
func (s *dirSource) layout(name string) (candidate, bool) {
	p := filepath.Join(s.dir, name)
	lfi, err := os.Stat(filepath.Join(p, bundle.LayoutFile))
	if err != nil || !lfi.Mode().IsRegular() {
		return candidate{}, false
	}
	c := candidate{source: s.index, name: name, settle: true, read: readLayout(p), root: rootLayout(p)}
	h := sha256.New()
	ifi, err := os.Stat(filepath.Join(p, bundle.IndexFile))
	if err != nil {
		c.waiting = "no " + bundle.IndexFile + " yet"
		c.id = "layout " + p + " no-index"
		return c, true
	}
	fmt.Fprintf(h, "%d %d %d %d\n", lfi.Size(), lfi.ModTime().UnixNano(), ifi.Size(), ifi.ModTime().UnixNano())
	blobs, _ := os.ReadDir(filepath.Join(p, "blobs", "sha256"))
	for _, b := range blobs {
		if info, err := b.Info(); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", b.Name(), info.Size(), info.ModTime().UnixNano())
		}
	}
	c.id = "layout " + p + " " + hex.EncodeToString(h.Sum(nil))[:32]
	return c, true
}

func readTarFile(p string) func(context.Context, *ioErrors, ...bundle.ReadOption) (*bundle.Result, error) {
	return func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error) {
		f, err := os.Open(p)
		if err != nil {
			t.note(err)
			return nil, err
		}
		defer f.Close()
		return bundle.ReadTar(ctx, trackedReader{f, t}, opts...)
	}
}

func rootTarFile(p string) func(context.Context, *ioErrors, bundle.Limits) (*rootInfo, error) {
	return func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var out rootInfo
		_, err = bundle.ReadTar(ctx, trackedReader{f, t}, rootOptions(lim, &out)...)
		return rootOutcome(ctx, &out, err, t)
	}
}

func readParts(dir, name string) func(context.Context, *ioErrors, ...bundle.ReadOption) (*bundle.Result, error) {
	return func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error) {
		root, err := os.OpenRoot(dir) // no part name or link leads out of the drop directory
		if err != nil {
			t.note(err)
			return nil, err
		}
		defer root.Close()
		fsys := &trackedFS{fsys: root.FS(), t: t}
		defer fsys.closeAll()
		return bundle.ReadParts(ctx, fsys, name, opts...)
	}
}

func rootParts(dir, name string) func(context.Context, *ioErrors, bundle.Limits) (*rootInfo, error) {
	return func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return rootOfParts(ctx, &trackedFS{fsys: root.FS(), t: t}, name, t, lim)
	}
}

// rootOfParts reads a split tar up to its root. bundle.ReadParts would read on to the end of
// the tar after the stop (to name a damaged part), so the parts are opened here and the tar
// read directly; the part being read is closed afterwards.
func rootOfParts(ctx context.Context, fsys *trackedFS, name string, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
	defer fsys.closeAll()
	r, _, err := bundle.OpenParts(fsys, name, lim)
	if err != nil {
		var out rootInfo
		return rootOutcome(ctx, &out, err, t)
	}
	var out rootInfo
	_, err = bundle.ReadTar(ctx, r, rootOptions(lim, &out)...)
	return rootOutcome(ctx, &out, err, t)
}

func readLayout(p string) func(context.Context, *ioErrors, ...bundle.ReadOption) (*bundle.Result, error) {
	return func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error) {
		root, err := os.OpenRoot(p)
		if err != nil {
			t.note(err)
			return nil, fmt.Errorf("bundle directory %s: %w", p, err)
		}
		defer root.Close()
		return bundle.ReadFiles(ctx, layoutFiles{root, t}, opts...)
	}
}

func rootLayout(p string) func(context.Context, *ioErrors, bundle.Limits) (*rootInfo, error) {
	return func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
		root, err := os.OpenRoot(p)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		var out rootInfo
		_, err = bundle.ReadFiles(ctx, layoutFiles{root, t}, rootOptions(lim, &out)...)
		return rootOutcome(ctx, &out, err, t)
	}
}

// s3Source is a bucket prefix: every part list directly under it is a candidate. A part list
// is uploaded after its parts (medium.WriteS3), so one that is listed is complete.
type s3Source struct {
	index  int
	cfg    S3Source
	client *minio.Client
}

func newS3Source(index int, cfg S3Source) (*s3Source, error) {
	client, err := medium.NewS3Client(cfg.Endpoint, cfg.Insecure) // makes no request
	if err != nil {
		return nil, fmt.Errorf("sources[%d].s3: %w", index, err)
	}
	return &s3Source{index: index, cfg: cfg, client: client}, nil
}

func (s *s3Source) prefix() string { return strings.Trim(s.cfg.Prefix, "/") }

func (s *s3Source) String() string {
	if s.prefix() == "" {
		return "s3://" + s.cfg.Bucket + " at " + s.cfg.Endpoint
	}
	return "s3://" + s.cfg.Bucket + "/" + s.prefix() + " at " + s.cfg.Endpoint
}

func (s *s3Source) list(ctx context.Context, _ bundle.Limits) ([]candidate, error) {
	names, err := medium.ListS3Bundles(ctx, s.client, s.cfg.Bucket, s.prefix())
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, name := range names {
		key := path.Join(s.prefix(), name)
		info, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
		if err != nil {
			if minio.ToErrorResponse(err).Code == "NoSuchKey" {
				continue // removed since it was listed
			}
			return nil, fmt.Errorf("%s: stat %s: %w", s, key, err)
		}
		name := name
		out = append(out, candidate{source: s.index, name: name,
			id: fmt.Sprintf("s3 %s/%s/%s %s %d", s.cfg.Endpoint, s.cfg.Bucket, key, info.ETag, info.Size),
			read: func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error) {
				fsys := &trackedFS{fsys: medium.S3FS(ctx, s.client, s.cfg.Bucket, s.prefix()), t: t}
				defer fsys.closeAll()
				return bundle.ReadParts(ctx, fsys, name, opts...)
			},
			root: func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
				ctx, cancel := context.WithCancel(ctx) // ends the request of the part being read
				defer cancel()
				return rootOfParts(ctx, &trackedFS{fsys: medium.S3FS(ctx, s.client, s.cfg.Bucket, s.prefix()), t: t}, name, t, lim)
			},
		})
	}
	return out, nil
}

// registrySource is a repository: every tag is a candidate, but the tags of attachments
// (sha256-<hex>, sha256-<hex>.sig) and tags of anything but an OCI index (which a bundle's root
// is) are not bundles.
type registrySource struct {
	index int
	cfg   RegistrySource
	repo  *remote.Repository
}

var attachmentTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\..*)?$`)

func newRegistrySource(index int, cfg RegistrySource) (*registrySource, error) {
	repo, err := medium.NewRepository(cfg.Repository, cfg.PlainHTTP) // makes no request
	if err != nil {
		return nil, fmt.Errorf("sources[%d].registry: %w", index, err)
	}
	return &registrySource{index: index, cfg: cfg, repo: repo}, nil
}

func (s *registrySource) String() string { return "registry " + s.cfg.Repository }

// tracked returns a client of the repository whose failures t notes.
func (s *registrySource) tracked(t *ioErrors) (*remote.Repository, error) {
	repo, err := medium.NewRepository(s.cfg.Repository, s.cfg.PlainHTTP)
	if err != nil {
		return nil, err
	}
	repo.Client = trackedClient{c: repo.Client, t: t}
	return repo, nil
}

func (s *registrySource) list(ctx context.Context, _ bundle.Limits) ([]candidate, error) {
	var tags []string
	if err := s.repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	}); err != nil {
		var resp *errcode.ErrorResponse
		if errors.Is(err, errdef.ErrNotFound) || errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound {
			return nil, nil // no repository yet: nothing pushed
		}
		return nil, fmt.Errorf("%s: list tags: %w", s, err)
	}
	var out []candidate
	for _, tag := range tags {
		if attachmentTag.MatchString(tag) {
			continue
		}
		desc, err := s.repo.Resolve(ctx, tag)
		if errors.Is(err, errdef.ErrNotFound) {
			continue // untagged since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("%s: resolve %s: %w", s, tag, err)
		}
		if desc.MediaType != ocispec.MediaTypeImageIndex {
			continue // not a bundle's root
		}
		tag := tag
		out = append(out, candidate{source: s.index, name: tag,
			id: fmt.Sprintf("registry %s:%s@%s", s.cfg.Repository, tag, desc.Digest),
			read: func(ctx context.Context, t *ioErrors, opts ...bundle.ReadOption) (*bundle.Result, error) {
				repo, err := s.tracked(t)
				if err != nil {
					return nil, err
				}
				return medium.ReadRegistry(ctx, repo, tag, opts...)
			},
			root: func(ctx context.Context, t *ioErrors, lim bundle.Limits) (*rootInfo, error) {
				max := lim.MaxManifestSize
				if max <= 0 {
					max = bundle.DefaultMaxManifestSize
				}
				if desc.Size > max {
					return &rootInfo{Unreadable: true}, nil
				}
				repo, err := s.tracked(t)
				if err != nil {
					return nil, err
				}
				data, err := content.FetchAll(ctx, repo, desc) // checks size and digest
				if err != nil {
					return nil, fmt.Errorf("%s: fetch the root of %s: %w", s, tag, err)
				}
				b, err := bundle.ParseRoot(data)
				if err != nil {
					return &rootInfo{Unreadable: true}, nil
				}
				return &rootInfo{Sequence: b.Sequence, Root: desc.Digest}, nil
			},
		})
	}
	return out, nil
}

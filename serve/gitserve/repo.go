package gitserve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	gitcache "github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// CommitRef is the ref a Git item resolved from a commit (no resolvedRef) is served at, besides
// a detached HEAD.
const CommitRef = "refs/ferry/commit"

// maxManifestSize bounds the root index, pack manifest and config read from the cache.
const maxManifestSize = 4 << 20

// objectCacheSize is the object cache of one request's storage.
const objectCacheSize = 16 * gitcache.MiByte

// errReadOnly is returned by every write to a served repository's refs.
var errReadOnly = errors.New("ferry serves Git repositories read-only")

// repo is one served Git item: a bare repository built from its pack, and the refs its config
// names. It never changes once built, so requests share it without locks.
type repo struct {
	name   string
	digest digest.Digest // of the pack
	dir    string
	pack   string
	commit plumbing.Hash
	config bundle.GitConfig
	refs   memory.ReferenceStorage
}

// open returns a storer over the repository for one request: go-git's filesystem storage is not
// safe for concurrent use, so each request has its own (the pack index is read from disk).
func (r *repo) open() *repoStorer {
	// Not ExclusiveAccess: with it, go-git's HasEncodedObject misses every packed object.
	fs := filesystem.NewStorage(osfs.New(r.dir), gitcache.NewObjectLRU(objectCacheSize))
	return &repoStorer{Storage: fs, refs: r.refs}
}

// repoStorer reads objects from a repository's pack and refs from the item's config, so two
// items whose commits give the same pack are each served their own refs. It refuses writes.
type repoStorer struct {
	*filesystem.Storage
	refs memory.ReferenceStorage
}

var _ storer.Storer = (*repoStorer)(nil)

// Reference returns a served ref.
func (s *repoStorer) Reference(n plumbing.ReferenceName) (*plumbing.Reference, error) {
	return s.refs.Reference(n)
}

// IterReferences lists the served refs.
func (s *repoStorer) IterReferences() (storer.ReferenceIter, error) { return s.refs.IterReferences() }

// SetReference refuses: the repository is read-only.
func (s *repoStorer) SetReference(*plumbing.Reference) error { return errReadOnly }

// CheckAndSetReference refuses: the repository is read-only.
func (s *repoStorer) CheckAndSetReference(_, _ *plumbing.Reference) error { return errReadOnly }

// RemoveReference refuses: the repository is read-only.
func (s *repoStorer) RemoveReference(plumbing.ReferenceName) error { return errReadOnly }

// CountLooseRefs counts the served refs.
func (s *repoStorer) CountLooseRefs() (int, error) { return len(s.refs), nil }

// PackRefs does nothing: the served refs live in memory.
func (s *repoStorer) PackRefs() error { return nil }

// servedRefs returns the refs an item is served with: its resolvedRef and HEAD (a symbolic ref
// to a branch, detached at a tag), or for a commit ref a detached HEAD and CommitRef.
func servedRefs(cfg bundle.GitConfig) (memory.ReferenceStorage, error) {
	if !plumbing.IsHash(cfg.Commit) {
		return nil, fmt.Errorf("config: commit %q is not a commit hash", cfg.Commit)
	}
	commit := plumbing.NewHash(cfg.Commit)
	refs := memory.ReferenceStorage{}
	name := plumbing.ReferenceName(cfg.ResolvedRef)
	switch {
	case cfg.ResolvedRef == "":
		refs[plumbing.HEAD] = plumbing.NewHashReference(plumbing.HEAD, commit)
		refs[CommitRef] = plumbing.NewHashReference(CommitRef, commit)
	case name.IsBranch() && name.Validate() == nil:
		refs[name] = plumbing.NewHashReference(name, commit)
		refs[plumbing.HEAD] = plumbing.NewSymbolicReference(plumbing.HEAD, name)
	case name.IsTag() && name.Validate() == nil:
		refs[name] = plumbing.NewHashReference(name, commit)
		refs[plumbing.HEAD] = plumbing.NewHashReference(plumbing.HEAD, commit)
	default:
		return nil, fmt.Errorf("config: resolvedRef %q is neither refs/heads/… nor refs/tags/…", cfg.ResolvedRef)
	}
	return refs, nil
}

// load makes a Git item of the cache servable: it reads the item's pack manifest and config and
// builds (or reuses) the repository of its pack.
func (s *Server) load(ctx context.Context, snap *cache.Snapshot, item cache.RecordItem) (*repo, error) {
	var root ocispec.Index
	if err := readJSON(ctx, snap, item.Root, &root); err != nil {
		return nil, fmt.Errorf("root index: %w", err)
	}
	if root.ArtifactType != bundle.GitArtifactType {
		return nil, fmt.Errorf("root index %s: artifactType %q, want %q", item.Root.Digest, root.ArtifactType, bundle.GitArtifactType)
	}
	packDesc, _ := bundle.GitRoles(root)
	if packDesc == nil {
		return nil, fmt.Errorf("root index %s: no manifest with %s=%s", item.Root.Digest, bundle.GitRoleAnnotation, bundle.GitRolePack)
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, snap, *packDesc, &m); err != nil {
		return nil, fmt.Errorf("pack manifest: %w", err)
	}
	layer, err := bundle.GitPackLayer(m)
	if err != nil {
		return nil, fmt.Errorf("pack manifest %s: %w", packDesc.Digest, err)
	}
	var cfg bundle.GitConfig
	if err := readJSON(ctx, snap, m.Config, &cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	refs, err := servedRefs(cfg)
	if err != nil {
		return nil, err
	}
	dir, pack, err := s.repository(ctx, snap, layer, refs)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", layer.Digest, err)
	}
	r := &repo{name: item.Name, digest: layer.Digest, dir: dir, pack: pack, commit: plumbing.NewHash(cfg.Commit), config: cfg, refs: refs}
	st := r.open()
	defer st.Close()
	if _, err := st.EncodedObject(plumbing.CommitObject, r.commit); err != nil {
		return nil, fmt.Errorf("pack %s: commit %s: %w", layer.Digest, cfg.Commit, err)
	}
	return r, nil
}

// readJSON reads a small blob of the cache, verified, and decodes it.
func readJSON(ctx context.Context, snap *cache.Snapshot, d ocispec.Descriptor, v any) error {
	b, err := snap.ReadAll(ctx, d, maxManifestSize)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", d.Digest, err)
	}
	return nil
}

// repository returns the bare repository of a pack, <private dir>/<pack digest hex>, and the
// path of its packfile, building it unless this server built it already. Nothing the server did
// not build itself is used: the directory is the process's own (see New). refs are written to
// it when it is built; requests take their refs from the item (see repoStorer).
func (s *Server) repository(ctx context.Context, snap *cache.Snapshot, layer ocispec.Descriptor, refs memory.ReferenceStorage) (string, string, error) {
	if err := layer.Digest.Validate(); err != nil || layer.Digest.Algorithm() != digest.SHA256 {
		return "", "", fmt.Errorf("digest %q is not a sha256 digest", layer.Digest)
	}
	if b, ok := s.built[layer.Digest]; ok {
		return b.dir, b.pack, nil
	}
	dir := filepath.Join(s.workDir, layer.Digest.Encoded())
	if err := os.RemoveAll(dir); err != nil { // what a failed build left
		return "", "", err
	}
	tmp, err := os.MkdirTemp(s.workDir, ".build-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	name, err := s.buildRepository(ctx, snap, tmp, layer, refs)
	if err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", "", err
	}
	pack := filepath.Join(dir, "objects", "pack", name+".pack")
	s.built[layer.Digest] = built{dir: dir, pack: pack}
	s.log.Info("built git repository", "pack", layer.Digest, "dir", dir)
	return dir, pack, nil
}

// built is a repository Reload built, by pack digest.
type built struct{ dir, pack string }

// privateDir creates the server's own directory, 0700, under workDir (created 0700 if missing;
// the system's temporary directory when ""), and locks it for the life of the process. Other
// servers' directories under workDir whose lock is free (their process ended) are removed.
func privateDir(workDir string, log *slog.Logger) (string, *os.File, error) {
	if workDir == "" {
		workDir = os.TempDir()
	} else if err := os.MkdirAll(workDir, 0o700); err != nil {
		return "", nil, err
	}
	stale, _ := filepath.Glob(filepath.Join(workDir, privatePrefix+"*"))
	for _, d := range stale {
		if lock, err := lockDir(d); err == nil {
			log.Info("removing the git work directory of a process that ended", "dir", d)
			os.RemoveAll(d)
			lock.Close()
		}
	}
	dir, err := os.MkdirTemp(workDir, privatePrefix)
	if err != nil {
		return "", nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, lock, nil
}

// privatePrefix names the servers' private directories.
const privatePrefix = "ferry-git-"

// lockDir takes the exclusive lock of dir's lock file without waiting.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// buildRepository writes a bare repository into dir: the pack copied from the cache (its digest
// checked), an index made by go-git's parser reading the pack from disk, a config and refs. It
// returns the pack's name, pack-<checksum>.
func (s *Server) buildRepository(ctx context.Context, snap *cache.Snapshot, dir string, layer ocispec.Descriptor, refs memory.ReferenceStorage) (string, error) {
	packDir := filepath.Join(dir, "objects", "pack")
	for _, d := range []string{packDir, filepath.Join(dir, "refs", "heads"), filepath.Join(dir, "refs", "tags")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	f, err := os.CreateTemp(packDir, "tmp-*.pack")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := copyBlob(ctx, snap, f, layer); err != nil {
		return "", err
	}
	// What is served is the file, not the stream: check the file against the layer's digest.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	v := layer.Digest.Verifier()
	if n, err := io.Copy(v, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("check packfile: %w", err)
	} else if n != layer.Size || !v.Verified() {
		return "", fmt.Errorf("packfile written does not match the layer's digest %s and size %d", layer.Digest, layer.Size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	w := new(idxfile.Writer)
	parser, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return "", fmt.Errorf("parse packfile: %w", err)
	}
	checksum, err := parser.Parse()
	if err != nil {
		return "", fmt.Errorf("parse packfile: %w", err)
	}
	index, err := w.Index()
	if err != nil {
		return "", fmt.Errorf("index packfile: %w", err)
	}
	name := "pack-" + checksum.String()
	if err := writeIndex(filepath.Join(packDir, name+".idx"), index); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), filepath.Join(packDir, name+".pack")); err != nil {
		return "", err
	}
	st := filesystem.NewStorage(osfs.New(dir), gitcache.NewObjectLRUDefault())
	defer st.Close()
	cfg := config.NewConfig()
	cfg.Core.IsBare = true
	if err := st.SetConfig(cfg); err != nil {
		return "", err
	}
	for _, ref := range refs {
		if err := st.SetReference(ref); err != nil {
			return "", err
		}
	}
	return name, nil
}

// copyBlob copies a blob of the cache to f, verified (its size and digest checked as it
// streams), and syncs f.
func copyBlob(ctx context.Context, snap *cache.Snapshot, f *os.File, d ocispec.Descriptor) error {
	rc, err := snap.Fetch(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(f, ctxReader{ctx, rc}); err != nil {
		return fmt.Errorf("copy packfile: %w", err)
	}
	return f.Sync()
}

// writeIndex writes a pack index file.
func writeIndex(path string, index *idxfile.MemoryIndex) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	if _, err := idxfile.NewEncoder(bw).Encode(index); err != nil {
		return fmt.Errorf("write pack index: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

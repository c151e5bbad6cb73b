package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

// Version is the cache layout's version, in the file "ferry-cache".
const Version = 1

// Paths inside a cache.
const (
	versionFile = "ferry-cache"
	blobsDir    = "blobs/sha256"
	recordsDir  = "refs/bundles"
	stagingDir  = "staging"
	quarantine  = "quarantine"
	stateFile   = "state.json"
	lockFile    = "lock"
)

// Cache is an open cache directory. Writers (import, gc, fsck's repairs) hold an exclusive
// lock on it; readers need none: blobs are immutable and an unlinked blob stays readable to
// whoever opened it.
type Cache struct {
	dir  string
	lock *os.File
}

// Open opens (creating if needed) the cache in dir, takes the writer's lock, and finishes or
// rolls back any import a crash interrupted.
func Open(dir string) (*Cache, error) {
	for _, d := range []string{blobsDir, recordsDir, stagingDir, quarantine} {
		if err := mkdirDurable(filepath.Join(dir, d)); err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, diskError(dir, err))
		}
	}
	vpath := filepath.Join(dir, versionFile)
	if b, err := os.ReadFile(vpath); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(vpath, []byte(fmt.Sprintf("{\"version\":%d}\n", Version))); err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, diskError(dir, err))
		}
	} else if err != nil {
		return nil, err
	} else if strings.TrimSpace(string(b)) != fmt.Sprintf("{\"version\":%d}", Version) {
		return nil, fmt.Errorf("cache %s: version %s, this sync reads version %d", dir, strings.TrimSpace(string(b)), Version)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("cache %s is in use by another sync process: %w", dir, err)
	}
	c := &Cache{dir: dir, lock: lock}
	if err := c.recover(); err != nil {
		c.Close()
		return nil, fmt.Errorf("cache %s: recover an interrupted import: %w", dir, diskError(dir, err))
	}
	return c, nil
}

// OpenReader opens the cache in dir for reading only: no lock, no recovery. Readers see only
// what a commit made visible: the state names the current bundle, and every blob it reaches was
// in place before the state was written.
func OpenReader(dir string) (*Cache, error) {
	b, err := os.ReadFile(filepath.Join(dir, versionFile))
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w (has sync imported anything yet?)", dir, err)
	}
	if strings.TrimSpace(string(b)) != fmt.Sprintf("{\"version\":%d}", Version) {
		return nil, fmt.Errorf("cache %s: version %s, this sync reads version %d", dir, strings.TrimSpace(string(b)), Version)
	}
	return &Cache{dir: dir}, nil
}

// Current returns the record of the current bundle (the one the state names), if any.
func (c *Cache) Current() (*Record, error) {
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	return c.recordOf(st)
}

// recordOf returns the record of the bundle st names; nil for an empty state.
func (c *Cache) recordOf(st State) (*Record, error) {
	if st.Root == "" {
		return nil, nil
	}
	recs, err := c.Records()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if recs[i].Root == st.Root {
			return &recs[i], nil
		}
	}
	return nil, fmt.Errorf("cache %s: the current bundle %d has no record (run 'sync fsck')", c.dir, st.Sequence)
}

// Close releases the writer's lock, if held.
func (c *Cache) Close() error {
	if c.lock == nil {
		return nil
	}
	return c.lock.Close()
}

// Dir returns the cache's directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) blobPath(d digest.Digest) string {
	return filepath.Join(c.dir, blobsDir, d.Encoded())
}

// Has reports whether the cache holds a blob: a bundle.HaveFunc for deltas.
func (c *Cache) Has(_ context.Context, d digest.Digest) (bool, error) {
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		return false, nil
	}
	_, err := os.Lstat(c.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Exists reports whether the cache holds the blob with the descriptor's size.
func (c *Cache) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	if desc.Digest.Validate() != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return false, nil
	}
	fi, err := os.Lstat(c.blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && fi.Mode().IsRegular() && fi.Size() == desc.Size, err
}

// Fetch opens a blob for reading in order. Blobs were verified when imported, and are again
// while they are read: the reader fails at the end, instead of returning the last bytes,
// unless the size and digest match desc (see Blob). A blob the cache does not hold is an error
// wrapping ErrNotFound.
func (c *Cache) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	b, err := c.openBlob(ctx, desc)
	if err != nil {
		return nil, err // not a nil *Blob in a non-nil interface
	}
	return b, nil
}

// State returns the last accepted bundle: what a new bundle is checked against.
func (c *Cache) State() (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(c.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("cache state %s: %w", stateFile, err)
	}
	return st, nil
}

// Record is what the cache keeps of an accepted bundle.
type Record struct {
	Sequence uint64        `json:"sequence"`
	Root     digest.Digest `json:"root"`
	Created  time.Time     `json:"created"`
	Expires  time.Time     `json:"expires"`
	Accepted time.Time     `json:"accepted"`
	Previous digest.Digest `json:"previous,omitempty"`
	Base     digest.Digest `json:"base,omitempty"`
	Items    []RecordItem  `json:"items"`
	// Index is the bundle's index.json as imported: the root and its signatures.
	Index json.RawMessage `json:"index"`
}

// RecordItem is one item of an accepted bundle.
type RecordItem struct {
	Name     string             `json:"name"`
	Kind     bundle.Kind        `json:"kind"`
	Source   string             `json:"source"`
	Revision string             `json:"revision"`
	Root     ocispec.Descriptor `json:"root"`
}

func recordName(seq uint64) string { return fmt.Sprintf("%020d.json", seq) }

// Records returns the accepted bundles, oldest first.
func (c *Cache) Records() ([]Record, error) {
	entries, err := os.ReadDir(filepath.Join(c.dir, recordsDir))
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".json"), 10, 64); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.dir, recordsDir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("record %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sequence < out[j].Sequence })
	return out, nil
}

// recordFiles serves an accepted bundle as layout files: its oci-layout and index.json from the
// record, its blobs from the cache.
type recordFiles struct {
	c     *Cache
	index []byte
}

func (r recordFiles) Stat(name string) (int64, bool, error) {
	switch name {
	case bundle.LayoutFile:
		return int64(len(bundle.LayoutFileContent)), true, nil
	case bundle.IndexFile:
		return int64(len(r.index)), true, nil
	}
	fi, err := os.Lstat(filepath.Join(r.c.dir, "blobs", filepath.FromSlash(strings.TrimPrefix(name, "blobs/"))))
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.Mode().IsRegular(), nil
}

func (r recordFiles) Open(name string) (io.ReadCloser, error) {
	switch name {
	case bundle.LayoutFile:
		return io.NopCloser(strings.NewReader(bundle.LayoutFileContent)), nil
	case bundle.IndexFile:
		return io.NopCloser(strings.NewReader(string(r.index))), nil
	}
	return os.Open(filepath.Join(r.c.dir, "blobs", filepath.FromSlash(strings.TrimPrefix(name, "blobs/"))))
}

// ReadBundle walks an accepted bundle's whole graph in the cache, re-hashing every blob.
func (c *Cache) ReadBundle(ctx context.Context, r Record, opts ...bundle.ReadOption) (*bundle.Result, error) {
	return bundle.ReadFiles(ctx, recordFiles{c: c, index: r.Index}, append([]bundle.ReadOption{bundle.WithHave(c.Has)}, opts...)...)
}

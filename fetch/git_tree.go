package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// gitMaxLinkTarget bounds a symlink's target; a longer one is skipped.
const gitMaxLinkTarget = 4096

// gitMaxLinkHops bounds how many symlinks resolving one target may follow, as the kernel does.
const gitMaxLinkHops = 40

// gitEntry is one path of the tree at the commit.
type gitEntry struct {
	path string // slash-separated, relative, no trailing slash
	mode filemode.FileMode
	hash plumbing.Hash
	// target is a symlink's target.
	target string
}

// tarName is the entry's name in the archive: directories end in a slash.
func (e gitEntry) tarName() string {
	if e.mode == filemode.Dir {
		return e.path + "/"
	}
	return e.path
}

// treeArchive returns the tree at the commit (only under s.Paths, if set) as a deterministic
// tar.gz: entries sorted by name, fixed modes and owners, mtime the Unix epoch, and a gzip
// header with neither name nor time.
func (s *gitSource) treeArchive(ctx context.Context) ([]byte, error) {
	tree, err := s.commit.Tree()
	if err != nil {
		return nil, s.errorf("tree of %s: %w", s.commit.Hash, err)
	}
	filters, err := s.filters()
	if err != nil {
		return nil, err
	}
	w := &gitWalk{out: nil, links: map[string]string{}, filters: filters, budget: newGitTreeBudget()}
	if err := s.walkTree(ctx, tree, "", 0, w); err != nil {
		return nil, s.errorf("tree of %s: %w", s.commit.Hash, err)
	}
	all, links := w.out, w.links
	entries, err := s.selectPaths(all)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(entries, func(a, b gitEntry) int { return strings.Compare(a.tarName(), b.tarName()) })

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // a zero Header: no name, no time
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, s.errorf("archive tree: %w", err)
		}
		if i > 0 && entries[i-1].tarName() == e.tarName() {
			return nil, s.errorf("tree of %s: %q appears twice", s.commit.Hash, e.path)
		}
		h := &tar.Header{Name: e.tarName(), ModTime: epoch, Mode: 0o644, Typeflag: tar.TypeReg}
		var blob *object.Blob
		switch e.mode {
		case filemode.Dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case filemode.Symlink:
			if !gitLinkInside(links, e.path, e.target) {
				s.log.Warn("git: skipped a symlink that leads out of the tree", "name", s.Name, "path", e.path, "target", e.target)
				continue
			}
			h.Typeflag, h.Mode, h.Linkname = tar.TypeSymlink, 0o777, e.target
		default:
			if e.mode == filemode.Executable {
				h.Mode = 0o755
			}
			if blob, err = object.GetBlob(s.store, e.hash); err != nil {
				return nil, s.errorf("archive %s: %w", e.path, err)
			}
			h.Size = blob.Size
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, s.errorf("archive %s: %w", e.path, err)
		}
		if blob != nil {
			if err := gitCopyBlob(tw, blob); err != nil {
				return nil, s.errorf("archive %s: %w", e.path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, s.errorf("archive tree: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, s.errorf("archive tree: %w", err)
	}
	return buf.Bytes(), nil
}

func gitCopyBlob(w io.Writer, b *object.Blob) error {
	r, err := b.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// gitWalk is the state of one walk of a tree: what it found and what it may still take.
type gitWalk struct {
	out   []gitEntry
	links map[string]string
	// filters are the cleaned spec paths; nil walks everything.
	filters []string
	budget  *gitTreeBudget
}

// wanted reports whether the walk keeps the entry at p and whether it descends into it (a
// folder under a filter, or one leading to a filter). Without filters it keeps everything.
func (w *gitWalk) wanted(p string) (keep, descend bool) {
	if w.filters == nil {
		return true, true
	}
	for _, f := range w.filters {
		if p == f || strings.HasPrefix(p, f+"/") {
			return true, true
		}
		if strings.HasPrefix(f, p+"/") {
			descend = true
		}
	}
	return descend, descend
}

// walkTree appends every directory, file and symlink under t (at folder depth depth) to w.out,
// recording symlinks' targets in w.links. Submodules and .git entries are skipped with a log
// line. Only what the spec's paths select is walked, and the walk stops as soon as it passes
// the tree limits (entries, bytes, depth): a small repository whose trees repeat one another
// (a "git bomb") is refused after at most bundle.MaxTreeEntries entries.
func (s *gitSource) walkTree(ctx context.Context, t *object.Tree, dir string, depth int, w *gitWalk) error {
	if depth > GitMaxTreeDepth {
		return fmt.Errorf("folders nest more than %d deep at %q (limit GitMaxTreeDepth); the repository is refused", GitMaxTreeDepth, dir+"/")
	}
	for _, te := range t.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if te.Name == "" || te.Name == "." || te.Name == ".." || strings.ContainsAny(te.Name, "/\x00") {
			return fmt.Errorf("entry %q in %q is not a valid file name", te.Name, dir+"/")
		}
		p := path.Join(dir, te.Name)
		if strings.EqualFold(te.Name, ".git") {
			s.log.Warn("git: skipped a .git entry of the tree", "name", s.Name, "path", p)
			continue
		}
		keep, descend := w.wanted(p)
		if !keep {
			continue
		}
		e := gitEntry{path: p, mode: te.Mode, hash: te.Hash}
		switch te.Mode {
		case filemode.Dir:
			if err := w.budget.addEntry(); err != nil {
				return err
			}
			if !descend {
				continue
			}
			sub, err := object.GetTree(s.store, te.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			w.out = append(w.out, e)
			if err := s.walkTree(ctx, sub, p, depth+1, w); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			if err := w.budget.addEntry(); err != nil {
				return err
			}
			size, err := s.blobSize(w.budget, te.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := w.budget.addBytes(size); err != nil {
				return err
			}
			w.out = append(w.out, e)
		case filemode.Symlink:
			if err := w.budget.addEntry(); err != nil {
				return err
			}
			b, err := object.GetBlob(s.store, te.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			var target bytes.Buffer
			if b.Size <= gitMaxLinkTarget {
				if err := gitCopyBlob(&target, b); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			if target.Len() == 0 || bytes.IndexByte(target.Bytes(), 0) >= 0 {
				s.log.Warn("git: skipped a symlink with an empty, overlong or binary target", "name", s.Name, "path", p)
				continue
			}
			e.target = target.String()
			w.links[p] = e.target
			w.out = append(w.out, e)
		case filemode.Submodule:
			s.log.Warn("git: skipped a submodule (not carried)", "name", s.Name, "path", p, "commit", te.Hash.String())
		default:
			return fmt.Errorf("%s: unknown file mode %o", p, uint32(te.Mode))
		}
	}
	return nil
}

// blobSize returns a blob's size without reading its content when the store can tell.
func (s *gitSource) blobSize(b *gitTreeBudget, h plumbing.Hash) (int64, error) {
	if n, ok := b.sizes[h]; ok {
		return n, nil
	}
	var n int64
	if sizer, ok := s.store.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		var err error
		if n, err = sizer.EncodedObjectSize(h); err != nil {
			return 0, err
		}
	} else {
		o, err := s.store.EncodedObject(plumbing.BlobObject, h)
		if err != nil {
			return 0, err
		}
		n = o.Size()
	}
	b.sizes[h] = n
	return n, nil
}

// filters returns the spec's paths cleaned, or nil to walk the whole tree.
func (s *gitSource) filters() ([]string, error) {
	var filters []string
	for _, raw := range s.Paths {
		f := path.Clean(raw)
		if f == "." {
			return nil, nil
		}
		if path.IsAbs(f) || f == ".." || strings.HasPrefix(f, "../") {
			return nil, s.errorf("path %q is not inside the repository", raw)
		}
		filters = append(filters, f)
	}
	return filters, nil
}

// selectPaths keeps the entries under s.Paths (and the folders that lead to them); every path
// must match something. Without paths it keeps everything.
func (s *gitSource) selectPaths(all []gitEntry) ([]gitEntry, error) {
	if len(s.Paths) == 0 {
		return all, nil
	}
	var filters []string
	for _, raw := range s.Paths {
		f := path.Clean(raw)
		if f == "." {
			return all, nil
		}
		if path.IsAbs(f) || f == ".." || strings.HasPrefix(f, "../") {
			return nil, s.errorf("path %q is not inside the repository", raw)
		}
		matched := false
		for _, e := range all {
			if e.path == f || strings.HasPrefix(e.path, f+"/") {
				matched = true
				break
			}
		}
		if !matched {
			return nil, s.errorf("path %q matches nothing at commit %s", raw, s.commit.Hash)
		}
		filters = append(filters, f)
	}
	var out []gitEntry
	for _, e := range all {
		for _, f := range filters {
			under := e.path == f || strings.HasPrefix(e.path, f+"/")
			leadsTo := e.mode == filemode.Dir && strings.HasPrefix(f, e.path+"/")
			if under || leadsTo {
				out = append(out, e)
				break
			}
		}
	}
	return out, nil
}

// gitLinkInside reports whether the symlink at link, pointing at target, resolves to a path
// inside the tree, following the tree's other symlinks as a checkout would: "../x" from the
// top, an absolute target, or a walk out through another link ("up/../.." where up -> ".")
// all leave it. A target that does not exist but stays inside is inside.
func gitLinkInside(links map[string]string, link, target string) bool {
	hops := 0
	var resolve func(stack []string, target string) ([]string, bool)
	resolve = func(stack []string, target string) ([]string, bool) {
		if strings.HasPrefix(target, "/") {
			return nil, false
		}
		for _, c := range strings.Split(target, "/") {
			switch c {
			case "", ".":
			case "..":
				if len(stack) == 0 {
					return nil, false
				}
				stack = stack[:len(stack)-1]
			default:
				stack = append(stack[:len(stack):len(stack)], c)
				t, ok := links[strings.Join(stack, "/")]
				if !ok {
					continue
				}
				if hops++; hops > gitMaxLinkHops {
					return nil, false
				}
				if stack, ok = resolve(stack[:len(stack)-1], t); !ok {
					return nil, false
				}
			}
		}
		return stack, true
	}
	var dir []string
	if d := path.Dir(link); d != "." {
		dir = strings.Split(d, "/")
	}
	_, ok := resolve(dir, target)
	return ok
}

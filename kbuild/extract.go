package kbuild

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
)

// Limits on what a source tree may hold once extracted.
const (
	maxTreeSize    = bundle.MaxTreeSize    // the extracted tree's files together, as the mirror bounds them
	maxTreeEntries = bundle.MaxTreeEntries // the same bound the mirror's tree walk applies
	maxLinkHops    = 40
	// maxLinkWork bounds the entries looked at while copying linked folders (each folder link
	// looks at every entry), so many links over a large tree cannot take minutes either.
	maxLinkWork = 50_000_000
)

// cleanEntry returns a tar entry's name as a clean relative path, or an error for a name that
// is absolute or climbs out with "..".
func cleanEntry(name string) (string, error) {
	n := strings.TrimSuffix(name, "/")
	if n == "" || n == "." || n == "./" {
		return "", nil
	}
	if strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
		return "", fmt.Errorf("tar entry %q: absolute paths are refused", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("tar entry %q: '..' is refused", name)
		}
	}
	return path.Clean(n), nil
}

// ExtractTarGz writes a tar.gz stream into fsys under root (an absolute, clean path). It
// refuses absolute names, ".." and links that leave the tree; a link inside the tree is replaced
// by a copy of its target, since the in-memory file system has no links.
func ExtractTarGz(r io.Reader, fsys filesys.FileSystem, root string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("source archive: %w", err)
	}
	tr := tar.NewReader(zr)
	if err := fsys.MkdirAll(root); err != nil {
		return err
	}
	files := map[string][]byte{} // relative path -> content
	dirs := map[string]bool{"": true}
	links := map[string]string{} // relative path -> target as written
	var total int64
	for n := 0; ; n++ {
		if n > maxTreeEntries {
			return fmt.Errorf("source archive: more than %d entries", maxTreeEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("source archive: %w", err)
		}
		name, err := cleanEntry(hdr.Name)
		if err != nil {
			return fmt.Errorf("source archive: %w", err)
		}
		if name == "" {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			dirs[name] = true
		case tar.TypeReg:
			total += hdr.Size
			if hdr.Size < 0 || total > maxTreeSize {
				return fmt.Errorf("source archive: the tree is larger than %d bytes", maxTreeSize)
			}
			b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
			if err != nil {
				return fmt.Errorf("source archive: %s: %w", name, err)
			}
			files[name] = b
		case tar.TypeSymlink:
			if strings.HasPrefix(hdr.Linkname, "/") {
				return fmt.Errorf("source archive: link %s -> %s: absolute link targets are refused", name, hdr.Linkname)
			}
			links[name] = hdr.Linkname
		default:
			return fmt.Errorf("source archive: %s: entry type %q is refused", name, string(hdr.Typeflag))
		}
	}
	if err := resolveLinks(files, dirs, links, total); err != nil {
		return fmt.Errorf("source archive: %w", err)
	}
	var dirNames []string
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames)
	for _, d := range dirNames {
		if err := fsys.MkdirAll(path.Join(root, d)); err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := fsys.MkdirAll(path.Join(root, path.Dir(name))); err != nil {
			return err
		}
		if err := fsys.WriteFile(path.Join(root, name), b); err != nil {
			return err
		}
	}
	return nil
}

// resolveLinks replaces each link by a copy of its target (a file, or a folder with everything
// under it), resolving the target one name at a time the way a checkout would, through other
// links; a target whose way leaves the tree, loops or ends nowhere is an error. The tree as
// expanded is held to the limits of the archive (maxTreeEntries, maxTreeSize, counting size
// from total, the archive's files), checked as each entry is copied: links to folders that
// hold links to folders double the tree at each level, and a few kilobytes of links would
// otherwise expand to more than memory holds.
func resolveLinks(files map[string][]byte, dirs map[string]bool, links map[string]string, total int64) error {
	names := make([]string, 0, len(links))
	for l := range links {
		names = append(names, l)
	}
	sort.Strings(names)
	work := 0
	grow := func(l string, size int64) error {
		if len(files)+len(dirs)+len(links) >= maxTreeEntries {
			return fmt.Errorf("link %s -> %s: the tree with its links copied has more than %d entries (links to folders holding links multiply the tree): link files, not folders, or keep links within their folder", l, links[l], maxTreeEntries)
		}
		if total += size; total > maxTreeSize {
			return fmt.Errorf("link %s -> %s: the tree with its links copied is larger than %d bytes (links to folders holding links multiply the tree): link files, not folders, or keep links within their folder", l, links[l], maxTreeSize)
		}
		return nil
	}
	for _, l := range names {
		hops := 0
		parts, err := walkLinks(links, parentParts(l), links[l], &hops)
		if err != nil {
			return fmt.Errorf("link %s -> %s: %w", l, links[l], err)
		}
		target := strings.Join(parts, "/")
		if b, ok := files[target]; ok {
			if err := grow(l, int64(len(b))); err != nil {
				return err
			}
			files[l] = b
			continue
		}
		if dirs[target] {
			if target == "" || l == target || strings.HasPrefix(l, target+"/") {
				return fmt.Errorf("link %s -> %s: points at a folder that holds it", l, links[l])
			}
			if work += len(files) + len(dirs); work > maxLinkWork {
				return fmt.Errorf("link %s -> %s: copying linked folders looks at more than %d entries: link files, not folders", l, links[l], maxLinkWork)
			}
			dirs[l] = true
			var newFiles []string
			var newDirs []string
			for f := range files {
				if strings.HasPrefix(f, target+"/") {
					newFiles = append(newFiles, f)
				}
			}
			for d := range dirs {
				if strings.HasPrefix(d, target+"/") {
					newDirs = append(newDirs, d)
				}
			}
			for _, f := range newFiles {
				if err := grow(l, int64(len(files[f]))); err != nil {
					return err
				}
				files[path.Join(l, strings.TrimPrefix(f, target+"/"))] = files[f]
			}
			for _, d := range newDirs {
				if err := grow(l, 0); err != nil {
					return err
				}
				dirs[path.Join(l, strings.TrimPrefix(d, target+"/"))] = true
			}
			continue
		}
		return fmt.Errorf("link %s -> %s: target not in the tree", l, links[l])
	}
	return nil
}

// parentParts returns the names of the folders holding the relative path p.
func parentParts(p string) []string {
	d := path.Dir(p)
	if d == "." {
		return nil
	}
	return strings.Split(d, "/")
}

// walkLinks resolves target from the folder base (as names from the root), following links
// met on the way; it returns the resolved path's names.
func walkLinks(links map[string]string, base []string, target string, hops *int) ([]string, error) {
	cur := append([]string(nil), base...)
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, errors.New("leaves the tree")
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, part)
		next, ok := links[strings.Join(cur, "/")]
		if !ok {
			continue
		}
		if *hops++; *hops > maxLinkHops {
			return nil, errors.New("too many links (a loop?)")
		}
		if strings.HasPrefix(next, "/") {
			return nil, errors.New("leaves the tree through an absolute link")
		}
		var err error
		if cur, err = walkLinks(links, cur[:len(cur)-1], next, hops); err != nil {
			return nil, err
		}
	}
	return cur, nil
}

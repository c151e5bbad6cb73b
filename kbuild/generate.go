package kbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// An ArtifactGenerator's copy operations (source.extensions.fluxcd.io/v1beta1, Flux's
// source-watcher) compose an ExternalArtifact from the trees of other sources. Both sides run
// them here, over the in-memory file system: mirror's discovery to find what the artifact's
// Kustomizations need, sync's reconcile to build them. The operations come from the
// repositories mirror reads, so every path is checked before it is used.

// ArtifactAlias is the alias of a copy operation's destination, the artifact's root.
const ArtifactAlias = "artifact"

// CopyOp is one copy operation of an ArtifactGenerator's artifact (spec.artifacts[].copy[]).
type CopyOp struct {
	// From is "@alias/pattern": a file or folder of the source with that alias, or a glob
	// (* ? [...]; "dir/**" is dir's contents).
	From string
	// To is "@artifact/path": a folder when it ends in "/".
	To string
	// Exclude lists globs of what From matches to leave out ("**" spans folders; a pattern
	// without "/" matches a file or folder name at any depth).
	Exclude []string
	// Strategy is Flux's copy strategy: "" and "Overwrite" are supported.
	Strategy string
}

// ErrCopyOp marks a copy operation that is malformed or asks for what is not supported.
var ErrCopyOp = errors.New("invalid copy operation")

// ParseFrom splits a copy operation's from, "@alias/pattern", into the alias and the pattern
// (cleaned, "." for the source's root). It refuses absolute patterns and "..".
func ParseFrom(from string) (alias, pattern string, err error) {
	rest, ok := strings.CutPrefix(from, "@")
	if !ok {
		return "", "", fmt.Errorf("%w: from %q: want @alias/path", ErrCopyOp, from)
	}
	alias, pattern, _ = strings.Cut(rest, "/")
	if alias == "" {
		return "", "", fmt.Errorf("%w: from %q: no alias", ErrCopyOp, from)
	}
	if pattern, err = cleanRel(pattern); err != nil {
		return "", "", fmt.Errorf("%w: from %q: %v", ErrCopyOp, from, err)
	}
	return alias, pattern, nil
}

// ParseTo reads a copy operation's to, "@artifact/path", as a path below the artifact's root
// ("." for the root) and whether it names a folder (it ends in "/", or is the root).
func ParseTo(to string) (rel string, dir bool, err error) {
	rest, ok := strings.CutPrefix(to, "@"+ArtifactAlias)
	if !ok || rest != "" && !strings.HasPrefix(rest, "/") {
		return "", false, fmt.Errorf("%w: to %q: want @%s/path", ErrCopyOp, to, ArtifactAlias)
	}
	rest = strings.TrimPrefix(rest, "/")
	if rel, err = cleanRel(rest); err != nil {
		return "", false, fmt.Errorf("%w: to %q: %v", ErrCopyOp, to, err)
	}
	return rel, rel == "." || strings.HasSuffix(rest, "/"), nil
}

// cleanRel cleans a slash-separated relative path, refusing absolute ones and any "..".
func cleanRel(p string) (string, error) {
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return "", fmt.Errorf("path %q must be relative, with forward slashes", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("path %q must not contain \"..\"", p)
		}
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains NUL", p)
	}
	return path.Clean("./" + p), nil
}

// hasMeta says whether a pattern has glob characters.
func hasMeta(p string) bool { return strings.ContainsAny(p, "*?[]") }

// CopyArtifact runs ops in order into the folder dst of fsys, as source-watcher composes an
// ExternalArtifact: srcRoots maps each source alias to the folder of fsys that holds its tree.
// Later operations overwrite what earlier ones wrote. Per operation, with From's path below
// its alias:
//   - "dir/**" copies dir's contents recursively into To, keeping their paths below dir;
//   - another glob ("dir/*.yaml", "*/base") copies each match, keeping its path from the
//     source's root, below To (a matched folder whole);
//   - a folder copies it as To/<folder name> (cp -r);
//   - a file copies it to To, or into To when To ends in "/" or is a folder already.
//
// A glob that matches nothing, or whose every match is excluded, and a path that does not
// exist, are errors; so are unknown aliases, absolute paths and "..".
func CopyArtifact(fsys filesys.FileSystem, srcRoots map[string]string, ops []CopyOp, dst string) error {
	if err := fsys.MkdirAll(dst); err != nil {
		return err
	}
	for _, op := range ops {
		if err := copyOp(fsys, srcRoots, op, dst); err != nil {
			return fmt.Errorf("copy from %q to %q: %w", op.From, op.To, err)
		}
	}
	return nil
}

func copyOp(fsys filesys.FileSystem, srcRoots map[string]string, op CopyOp, dst string) error {
	if op.Strategy != "" && op.Strategy != "Overwrite" {
		return fmt.Errorf("%w: strategy %s is not supported (Overwrite)", ErrCopyOp, op.Strategy)
	}
	alias, pattern, err := ParseFrom(op.From)
	if err != nil {
		return err
	}
	rel, toDir, err := ParseTo(op.To)
	if err != nil {
		return err
	}
	root, ok := srcRoots[alias]
	if !ok {
		return fmt.Errorf("%w: no source with alias %q", ErrCopyOp, alias)
	}
	for _, ex := range op.Exclude {
		if err := validGlob(ex); err != nil {
			return fmt.Errorf("%w: exclude %q: %v", ErrCopyOp, ex, err)
		}
	}
	if err := validGlob(pattern); err != nil {
		return fmt.Errorf("%w: from %q: %v", ErrCopyOp, op.From, err)
	}
	to := path.Join(dst, rel)
	prefix := literalPrefix(pattern)
	// skip says whether the entry at p (below the source's root) is excluded: p itself, p
	// below From's literal prefix, or p below the folder being copied (at top).
	skip := func(top, p string) bool {
		if len(op.Exclude) == 0 {
			return false
		}
		return excluded(p, op.Exclude) || excluded(below(prefix, p), op.Exclude) || excluded(below(top, p), op.Exclude)
	}
	if !hasMeta(pattern) {
		src := path.Join(root, pattern)
		if !fsys.Exists(src) {
			return fmt.Errorf("%s: no such file or folder in source %q", pattern, alias)
		}
		if fsys.IsDir(src) {
			name := path.Base(pattern)
			if pattern == "." {
				name = ""
			}
			return copyTree(fsys, root, pattern, path.Join(to, name), skip)
		}
		if excluded(pattern, op.Exclude) {
			return nil
		}
		if toDir || fsys.IsDir(to) {
			to = path.Join(to, path.Base(pattern))
		}
		return copyFile(fsys, src, to)
	}
	matches, err := glob(fsys, root, pattern)
	if err != nil {
		return err
	}
	if len(matches) == 0 {
		return fmt.Errorf("no file or folder of source %q matches %s", alias, pattern)
	}
	dir, contents := strings.CutSuffix(pattern, "/**")
	if pattern == "**" {
		dir, contents = ".", true
	}
	copied := 0
	for _, m := range matches {
		if skip(m, m) {
			continue
		}
		copied++
		target := path.Join(to, m)
		if contents && (dir == "." || strings.HasPrefix(m, dir+"/")) {
			target = path.Join(to, below(dir, m))
		}
		if err := copyTree(fsys, root, m, target, skip); err != nil {
			return err
		}
	}
	if copied == 0 {
		return fmt.Errorf("every match of %s in source %q is excluded", pattern, alias)
	}
	return nil
}

// literalPrefix is the folder part of a pattern before its first glob character ("." when
// the pattern starts with one, the pattern itself when it has none).
func literalPrefix(pattern string) string {
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		if hasMeta(seg) {
			if i == 0 {
				return "."
			}
			return strings.Join(segs[:i], "/")
		}
	}
	return pattern
}

// below returns p relative to the folder dir ("." the root), or p when it is not below dir.
func below(dir, p string) string {
	if dir == "." {
		return p
	}
	if r, ok := strings.CutPrefix(p, dir+"/"); ok {
		return r
	}
	return p
}

// validGlob checks a glob's syntax, segment by segment.
func validGlob(p string) error {
	for _, seg := range strings.Split(p, "/") {
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("bad glob %q", p)
		}
	}
	return nil
}

// glob returns the paths below root (relative to it, sorted) that pattern matches, segment
// by segment as io/fs.Glob does ("**" matching one segment, as "*" does).
func glob(fsys filesys.FileSystem, root, pattern string) ([]string, error) {
	cur := []string{"."}
	for _, seg := range strings.Split(pattern, "/") {
		var next []string
		for _, dir := range cur {
			full := path.Join(root, dir)
			if !fsys.IsDir(full) {
				continue
			}
			if !hasMeta(seg) {
				if fsys.Exists(path.Join(full, seg)) {
					next = append(next, path.Join(dir, seg))
				}
				continue
			}
			entries, err := fsys.ReadDir(full)
			if err != nil {
				return nil, err
			}
			sort.Strings(entries)
			for _, e := range entries {
				if ok, _ := path.Match(seg, e); ok {
					next = append(next, path.Join(dir, e))
				}
			}
		}
		cur = next
	}
	return cur, nil
}

// excluded says whether rel (a path below the source's root, or below the copied folder)
// matches one of the exclude patterns: the whole path, or, for a pattern without "/", its
// last name.
func excluded(rel string, patterns []string) bool {
	for _, p := range patterns {
		if matchSegments(strings.Split(p, "/"), strings.Split(rel, "/")) {
			return true
		}
		if !strings.Contains(p, "/") {
			if ok, _ := path.Match(p, path.Base(rel)); ok {
				return true
			}
		}
	}
	return false
}

// matchSegments matches a path's segments against a pattern's, where "**" stands for any
// number of segments (none included). It runs in time proportional to the product of the two
// lengths, however many "**" the pattern has.
func matchSegments(pat, name []string) bool {
	// ok[j]: pat[:i] matches name[:j], row by row.
	ok := make([]bool, len(name)+1)
	ok[0] = true
	for _, p := range pat {
		next := make([]bool, len(name)+1)
		if p == "**" {
			reached := false
			for j := range ok {
				reached = reached || ok[j]
				next[j] = reached
			}
		} else {
			for j := 1; j <= len(name); j++ {
				if ok[j-1] {
					next[j], _ = path.Match(p, name[j-1])
				}
			}
		}
		ok = next
	}
	return ok[len(name)]
}

// copyTree copies the file or folder at rel (below root) to dst; of a folder, the entries
// skip(rel, entry path below root) excludes are left out, a folder's whole.
func copyTree(fsys filesys.FileSystem, root, rel, dst string, skip func(top, p string) bool) error {
	return copyEntry(fsys, root, rel, rel, dst, skip)
}

// copyEntry copies the entry p of the folder top being copied to dst.
func copyEntry(fsys filesys.FileSystem, root, top, p, dst string, skip func(top, p string) bool) error {
	src := path.Join(root, p)
	if !fsys.IsDir(src) {
		return copyFile(fsys, src, dst)
	}
	if err := fsys.MkdirAll(dst); err != nil {
		return err
	}
	entries, err := fsys.ReadDir(src)
	if err != nil {
		return err
	}
	sort.Strings(entries)
	for _, e := range entries {
		q := path.Join(p, e)
		if skip(top, q) {
			continue
		}
		if err := copyEntry(fsys, root, top, q, path.Join(dst, e), skip); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(fsys filesys.FileSystem, src, dst string) error {
	b, err := fsys.ReadFile(src)
	if err != nil {
		return err
	}
	if fsys.IsDir(dst) {
		return fmt.Errorf("%s: a folder of the artifact, cannot be overwritten by a file", dst)
	}
	if err := fsys.MkdirAll(path.Dir(dst)); err != nil {
		return err
	}
	return fsys.WriteFile(dst, b)
}

// TreeDigest is the digest of the files below root: sha256 over each file's path (relative to
// root, in sorted order), size and content. Equal trees have equal digests, whatever the order
// they were written in.
func TreeDigest(fsys filesys.FileSystem, root string) (string, error) {
	var files []string
	err := walkFiles(fsys, root, "", &files)
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := fsys.ReadFile(path.Join(root, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func walkFiles(fsys filesys.FileSystem, root, rel string, out *[]string) error {
	entries, err := fsys.ReadDir(path.Join(root, rel))
	if err != nil {
		return err
	}
	for _, e := range entries {
		r := path.Join(rel, e)
		if fsys.IsDir(path.Join(root, r)) {
			if err := walkFiles(fsys, root, r, out); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, r)
	}
	return nil
}

// Files returns the files below root of fsys, by path relative to root.
func Files(fsys filesys.FileSystem, root string) (map[string][]byte, error) {
	var files []string
	if err := walkFiles(fsys, root, "", &files); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := fsys.ReadFile(path.Join(root, f))
		if err != nil {
			return nil, err
		}
		out[f] = b
	}
	return out, nil
}

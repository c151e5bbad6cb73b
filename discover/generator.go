package discover

import (
	"context"
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/kbuild"
)

// ArtifactGeneratorKind is the kind (source.extensions.fluxcd.io) that composes
// ExternalArtifacts from other sources.
const ArtifactGeneratorKind = "ArtifactGenerator"

// externalArtifact builds the tree of the ExternalArtifact named name in ns, which an
// ArtifactGenerator there produces, into fsys at kbuild.SourceRoot. It reports false while
// the generator or one of its sources is not known yet.
func (w *walker) externalArtifact(ctx context.Context, ns, name, needer string, fsys filesys.FileSystem) (bool, error) {
	var gen *unstructured.Unstructured
	var art map[string]any
	for k, u := range w.sources {
		if k.kind != ArtifactGeneratorKind || k.namespace != ns {
			continue
		}
		arts, _, _ := unstructured.NestedSlice(u.Object, "spec", "artifacts")
		for _, a := range arts {
			m, _ := a.(map[string]any)
			if n, _ := m["name"].(string); n == name {
				gen, art = u, m
			}
		}
	}
	if gen == nil {
		return false, nil
	}
	aliases := map[string]*unstructured.Unstructured{}
	srcs, _, _ := unstructured.NestedSlice(gen.Object, "spec", "sources")
	for _, s := range srcs {
		m, _ := s.(map[string]any)
		alias, _ := m["alias"].(string)
		kind, _ := m["kind"].(string)
		sname, _ := m["name"].(string)
		sns, _ := m["namespace"].(string)
		src := w.source(kind, refNS(sns, ns), sname)
		if src == nil {
			return false, nil
		}
		aliases[alias] = src
	}
	what := fmt.Sprintf("ArtifactGenerator %s/%s artifact %s", ns, gen.GetName(), name)
	extracted := map[string]bool{}
	copies, _, _ := unstructured.NestedSlice(art, "copy")
	for _, c := range copies {
		m, _ := c.(map[string]any)
		from, _ := m["from"].(string)
		to, _ := m["to"].(string)
		alias, rel, ok := splitAlias(from)
		if !ok || !strings.HasPrefix(to, "@artifact/") && to != "@artifact" {
			return false, fmt.Errorf("%s: copy from %q to %q: want from @alias/path and to @artifact/path", what, from, to)
		}
		src := aliases[alias]
		if src == nil {
			return false, fmt.Errorf("%s: copy from %q: no source with alias %q", what, from, alias)
		}
		root := "/generator/" + alias
		if !extracted[alias] {
			it, err := w.treeSource(ctx, src, needer+" via "+what)
			if err != nil {
				return false, err
			}
			if it == nil {
				return true, nil
			}
			if err := extractTree(ctx, w.o.Store, *it, fsys, root); err != nil {
				return false, err
			}
			extracted[alias] = true
		}
		dst := path.Join(kbuild.SourceRoot, strings.TrimPrefix(strings.TrimPrefix(to, "@artifact"), "/"))
		if err := copyGlob(fsys, root, rel, dst, strings.HasSuffix(to, "/")); err != nil {
			return false, fmt.Errorf("%s: copy from %q to %q: %w", what, from, to, err)
		}
	}
	return true, nil
}

// splitAlias splits "@alias/path" into alias and path.
func splitAlias(s string) (string, string, bool) {
	if !strings.HasPrefix(s, "@") {
		return "", "", false
	}
	s = s[1:]
	i := strings.Index(s, "/")
	if i < 0 {
		return s, "", true
	}
	return s[:i], s[i+1:], true
}

// copyGlob copies what pattern (relative to root) matches into dst, as an ArtifactGenerator's
// copy does: "dir/**" copies dir's contents, keeping their paths below dir; "dir/*.yaml"
// copies the matching files; a plain path copies that file or folder. With toDir, a single
// file goes into dst rather than becoming it.
func copyGlob(fsys filesys.FileSystem, root, pattern, dst string, toDir bool) error {
	switch {
	case pattern == "**" || strings.HasSuffix(pattern, "/**"):
		dir := path.Join(root, strings.TrimSuffix(strings.TrimSuffix(pattern, "**"), "/"))
		if !fsys.IsDir(dir) {
			return fmt.Errorf("%s: no such folder in the source", strings.TrimPrefix(dir, root+"/"))
		}
		return copyTree(fsys, dir, dst)
	case strings.ContainsAny(pattern, "*?["):
		dir, pat := path.Split(pattern)
		entries, err := fsys.ReadDir(path.Join(root, dir))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if ok, _ := path.Match(pat, e); ok {
				if err := copyTree(fsys, path.Join(root, dir, e), path.Join(dst, e)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	src := path.Join(root, pattern)
	if !fsys.Exists(src) {
		return fmt.Errorf("%s: no such file in the source", pattern)
	}
	if !fsys.IsDir(src) && toDir {
		dst = path.Join(dst, path.Base(src))
	}
	return copyTree(fsys, src, dst)
}

// copyTree copies a file or a folder's contents recursively.
func copyTree(fsys filesys.FileSystem, src, dst string) error {
	if !fsys.IsDir(src) {
		b, err := fsys.ReadFile(src)
		if err != nil {
			return err
		}
		if err := fsys.MkdirAll(path.Dir(dst)); err != nil {
			return err
		}
		return fsys.WriteFile(dst, b)
	}
	if err := fsys.MkdirAll(dst); err != nil {
		return err
	}
	entries, err := fsys.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := copyTree(fsys, path.Join(src, e), path.Join(dst, e)); err != nil {
			return err
		}
	}
	return nil
}

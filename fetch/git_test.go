package fetch_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
)

// gitFixture is a repository "platform" on a real Git server:
//
//	first:  README.md, clusters/{prod,staging}/app.yaml, infra/namespaces.yaml
//	        branch dev, tags v1.0.0 (lightweight) and v1.2.0 (annotated)
//	second: changes clusters/prod/app.yaml, adds clusters/prod/extra.yaml, removes README.md
//	        branch main, tags v2.0.0 and v3 (lightweight; v3 is not semver), stable (annotated)
type gitFixture struct {
	srv           *testenv.GitServer
	url           string
	first, second string
}

// The trees at the two commits, as gitTarFiles shows them.
var (
	gitTreeFirst = map[string]string{
		"README.md":                 "platform\n",
		"clusters/":                 "dir",
		"clusters/prod/":            "dir",
		"clusters/prod/app.yaml":    "replicas: 3\n",
		"clusters/staging/":         "dir",
		"clusters/staging/app.yaml": "replicas: 1\n",
		"infra/":                    "dir",
		"infra/namespaces.yaml":     "kind: Namespace\n",
	}
	gitTreeSecond = map[string]string{
		"clusters/":                 "dir",
		"clusters/prod/":            "dir",
		"clusters/prod/app.yaml":    "replicas: 5\n",
		"clusters/prod/extra.yaml":  "kind: ConfigMap\n",
		"clusters/staging/":         "dir",
		"clusters/staging/app.yaml": "replicas: 1\n",
		"infra/":                    "dir",
		"infra/namespaces.yaml":     "kind: Namespace\n",
	}
)

func newGitFixture(t *testing.T) *gitFixture {
	t.Helper()
	// No ~/.git-credentials of the machine running the tests takes part.
	t.Setenv("HOME", t.TempDir())
	ctx := context.Background()
	g := testenv.NewGitServer(t)
	f := &gitFixture{srv: g, url: g.RepoURL("platform")}
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f.first, err = g.CreateRepo(ctx, "platform", map[string]string{
		"README.md":                 "platform\n",
		"clusters/prod/app.yaml":    "replicas: 3\n",
		"clusters/staging/app.yaml": "replicas: 1\n",
		"infra/namespaces.yaml":     "kind: Namespace\n",
	})
	must(err)
	must(g.Branch(ctx, "platform", "dev"))
	must(g.Tag(ctx, "platform", "v1.0.0"))
	must(g.AnnotatedTag(ctx, "platform", "v1.2.0", "release 1.2.0"))
	f.second, err = g.Commit(ctx, "platform", map[string]string{
		"clusters/prod/app.yaml":   "replicas: 5\n",
		"clusters/prod/extra.yaml": "kind: ConfigMap\n",
		"README.md":                "",
	}, "second")
	must(err)
	must(g.Tag(ctx, "platform", "v2.0.0"))
	must(g.Tag(ctx, "platform", "v3"))
	must(g.AnnotatedTag(ctx, "platform", "stable", "stable release"))
	if f.first == f.second {
		t.Fatal("the fixture's two commits are one")
	}
	return f
}

// gitFetch fetches src into a new layout and returns the item, the layout and the log.
func gitFetch(t *testing.T, src spec.Git) (bundle.Item, *bundle.Layout, string) {
	t.Helper()
	l, err := bundle.NewLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	item, err := fetch.Git(context.Background(), l, src, &fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("fetch %s %+v: %v", src.URL, src.Ref, err)
	}
	return item, l, logs.String()
}

// gitBlob reads a blob of the layout and checks its digest and size.
func gitBlob(t *testing.T, l *bundle.Layout, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir(), "blobs", "sha256", d.Digest.Encoded()))
	if err != nil {
		t.Fatalf("blob %s (%s): %v", d.Digest, d.MediaType, err)
	}
	if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: read %d bytes hashing to %s", d.Digest, len(b), digest.FromBytes(b))
	}
	return b
}

// gitItem is a Git item's graph, read back from a layout.
type gitItem struct {
	index              ocispec.Index
	pack, flux         ocispec.Manifest
	packDesc, fluxDesc ocispec.Descriptor
	config             []byte
	packfile           []byte
	fluxConfig         []byte
	tgz                []byte
}

// gitRead reads an item's graph and checks its shape: an index of a pack manifest and a Flux
// manifest, each with the media types docs/git-artifacts.md gives.
func gitRead(t *testing.T, l *bundle.Layout, item bundle.Item) gitItem {
	t.Helper()
	var g gitItem
	if item.Kind != bundle.KindGit || item.Descriptor.MediaType != ocispec.MediaTypeImageIndex || item.Descriptor.ArtifactType != "application/vnd.ferry.git.v1" {
		t.Fatalf("item %s: kind %s, root %s (%s)", item.Name, item.Kind, item.Descriptor.MediaType, item.Descriptor.ArtifactType)
	}
	if err := json.Unmarshal(gitBlob(t, l, item.Descriptor), &g.index); err != nil {
		t.Fatal(err)
	}
	if g.index.MediaType != ocispec.MediaTypeImageIndex || g.index.ArtifactType != "application/vnd.ferry.git.v1" || len(g.index.Manifests) != 2 {
		t.Fatalf("root index: mediaType %s, artifactType %s, %d manifests", g.index.MediaType, g.index.ArtifactType, len(g.index.Manifests))
	}
	g.packDesc, g.fluxDesc = g.index.Manifests[0], g.index.Manifests[1]
	if r := g.packDesc.Annotations["dev.ferry.git.role"]; r != "pack" || g.packDesc.ArtifactType != "application/vnd.ferry.git.v1" {
		t.Fatalf("first manifest: role %q, artifactType %q", r, g.packDesc.ArtifactType)
	}
	if r := g.fluxDesc.Annotations["dev.ferry.git.role"]; r != "flux" {
		t.Fatalf("second manifest: role %q", r)
	}
	for _, m := range []struct {
		desc ocispec.Descriptor
		into *ocispec.Manifest
	}{{g.packDesc, &g.pack}, {g.fluxDesc, &g.flux}} {
		if m.desc.MediaType != ocispec.MediaTypeImageManifest {
			t.Fatalf("manifest %s has media type %s", m.desc.Digest, m.desc.MediaType)
		}
		if err := json.Unmarshal(gitBlob(t, l, m.desc), m.into); err != nil {
			t.Fatal(err)
		}
		if m.into.MediaType != ocispec.MediaTypeImageManifest || len(m.into.Layers) != 1 {
			t.Fatalf("manifest %s: mediaType %s, %d layers", m.desc.Digest, m.into.MediaType, len(m.into.Layers))
		}
	}
	if g.pack.ArtifactType != "application/vnd.ferry.git.v1" || g.pack.Config.MediaType != "application/vnd.ferry.git.config.v1+json" || g.pack.Layers[0].MediaType != "application/vnd.ferry.git.pack.v1" {
		t.Fatalf("pack manifest: artifactType %s, config %s, layer %s", g.pack.ArtifactType, g.pack.Config.MediaType, g.pack.Layers[0].MediaType)
	}
	if g.flux.ArtifactType != "" || g.flux.Config.MediaType != "application/vnd.cncf.flux.config.v1+json" || g.flux.Layers[0].MediaType != "application/vnd.cncf.flux.content.v1.tar+gzip" {
		t.Fatalf("flux manifest: artifactType %q, config %s, layer %s", g.flux.ArtifactType, g.flux.Config.MediaType, g.flux.Layers[0].MediaType)
	}
	g.config = gitBlob(t, l, g.pack.Config)
	g.packfile = gitBlob(t, l, g.pack.Layers[0])
	g.fluxConfig = gitBlob(t, l, g.flux.Config)
	g.tgz = gitBlob(t, l, g.flux.Layers[0])
	return g
}

// gitUnpack loads a packfile into a fresh memory storer, as the sync side would.
func gitUnpack(t *testing.T, pack []byte) *memory.Storage {
	t.Helper()
	st := memory.NewStorage()
	if err := packfile.UpdateObjectStorage(st, bytes.NewReader(pack)); err != nil {
		t.Fatalf("unpack %d bytes: %v", len(pack), err)
	}
	return st
}

// gitHistory walks from commit through every parent in st, returning the commits by hash.
func gitHistory(t *testing.T, st *memory.Storage, commit string) []string {
	t.Helper()
	c, err := object.GetCommit(st, plumbing.NewHash(commit))
	if err != nil {
		t.Fatalf("commit %s not in the pack: %v", commit, err)
	}
	var seen []string
	err = object.NewCommitPreorderIter(c, nil, nil).ForEach(func(c *object.Commit) error {
		seen = append(seen, c.Hash.String())
		tree, err := c.Tree()
		if err != nil {
			return err
		}
		return tree.Files().ForEach(func(f *object.File) error {
			_, err := f.Contents()
			return err
		})
	})
	if err != nil {
		t.Fatalf("walk the history of %s in the pack: %v", commit, err)
	}
	return seen
}

// gitTarEntry is one entry of a Flux tar.gz.
type gitTarEntry struct {
	hdr  tar.Header
	body string
}

// gitReadTar reads a tar.gz, checking its gzip header carries neither name nor time.
func gitReadTar(t *testing.T, tgz []byte) []gitTarEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || zr.Comment != "" || !zr.ModTime.IsZero() {
		t.Fatalf("gzip header: name %q, comment %q, time %s", zr.Name, zr.Comment, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var out []gitTarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gitTarEntry{*h, string(b)})
	}
}

// gitTarFiles summarises a tar.gz by name: a file's content, "dir", or "-> target", and checks
// every header is written the deterministic way: sorted, owner 0 with no names, epoch mtime.
func gitTarFiles(t *testing.T, tgz []byte) map[string]string {
	t.Helper()
	files := map[string]string{}
	var names []string
	for _, e := range gitReadTar(t, tgz) {
		h := e.hdr
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Fatalf("%s: uid %d gid %d uname %q gname %q mtime %s", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if h.Mode != 0o755 || !strings.HasSuffix(h.Name, "/") {
				t.Fatalf("directory %s: mode %o", h.Name, h.Mode)
			}
			files[h.Name] = "dir"
		case tar.TypeReg:
			if h.Mode != 0o644 && h.Mode != 0o755 {
				t.Fatalf("file %s: mode %o", h.Name, h.Mode)
			}
			files[h.Name] = e.body
		case tar.TypeSymlink:
			files[h.Name] = "-> " + h.Linkname
		default:
			t.Fatalf("%s: entry type %c", h.Name, h.Typeflag)
		}
	}
	if !slices.IsSorted(names) {
		t.Fatalf("entries not sorted: %v", names)
	}
	return files
}

func gitEqualFiles(t *testing.T, got, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("tar entry %s: got %q (present %v), want %q", name, g, ok, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("tar entry %s is not expected", name)
		}
	}
}

func TestGitResolvesRefs(t *testing.T) {
	f := newGitFixture(t)
	cases := []struct {
		name     string
		ref      spec.GitRef
		refJSON  string
		commit   string
		resolved string
		revision string // the Flux revision without "sha1:<commit>"
		tree     map[string]string
		history  int
	}{
		{"branch main", spec.GitRef{Branch: "main"}, `{"branch":"main"}`, f.second, "refs/heads/main", "main@", gitTreeSecond, 2},
		{"branch dev", spec.GitRef{Branch: "dev"}, `{"branch":"dev"}`, f.first, "refs/heads/dev", "dev@", gitTreeFirst, 1},
		{"annotated tag", spec.GitRef{Tag: "v1.2.0"}, `{"tag":"v1.2.0"}`, f.first, "refs/tags/v1.2.0", "v1.2.0@", gitTreeFirst, 1},
		{"annotated tag, not semver", spec.GitRef{Tag: "stable"}, `{"tag":"stable"}`, f.second, "refs/tags/stable", "stable@", gitTreeSecond, 2},
		{"lightweight tag", spec.GitRef{Tag: "v2.0.0"}, `{"tag":"v2.0.0"}`, f.second, "refs/tags/v2.0.0", "v2.0.0@", gitTreeSecond, 2},
		{"semver range", spec.GitRef{SemVer: ">=1.0.0 <2.0.0"}, `{"semver":">=1.0.0 <2.0.0"}`, f.first, "refs/tags/v1.2.0", "v1.2.0@", gitTreeFirst, 1},
		{"semver ignores v3", spec.GitRef{SemVer: ">=1.0.0"}, `{"semver":">=1.0.0"}`, f.second, "refs/tags/v2.0.0", "v2.0.0@", gitTreeSecond, 2},
		{"semver exact", spec.GitRef{SemVer: "1.0.0"}, `{"semver":"1.0.0"}`, f.first, "refs/tags/v1.0.0", "v1.0.0@", gitTreeFirst, 1},
		{"commit at a tip", spec.GitRef{Commit: f.second}, `{"commit":"` + f.second + `"}`, f.second, "", "", gitTreeSecond, 2},
		{"commit", spec.GitRef{Commit: f.first}, `{"commit":"` + f.first + `"}`, f.first, "", "", gitTreeFirst, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			item, l, logs := gitFetch(t, spec.Git{Name: "platform", URL: f.url, Ref: tc.ref})
			if item.Name != "platform" || item.Kind != bundle.KindGit || item.Source != f.url || item.Revision != tc.commit {
				t.Fatalf("item %+v, want platform from %s at %s", item, f.url, tc.commit)
			}
			g := gitRead(t, l, item)

			wantConfig := `{"url":"` + f.url + `","ref":` + tc.refJSON + `,"resolvedRef":"` + tc.resolved + `","commit":"` + tc.commit + `"}`
			if string(g.config) != wantConfig {
				t.Errorf("config:\n got %s\nwant %s", g.config, wantConfig)
			}

			st := gitUnpack(t, g.packfile)
			if h := gitHistory(t, st, tc.commit); len(h) != tc.history || h[0] != tc.commit {
				t.Errorf("pack history from %s: %v, want %d commits", tc.commit, h, tc.history)
			}
			if tc.commit == f.first {
				if _, err := st.EncodedObject(plumbing.AnyObject, plumbing.NewHash(f.second)); !errors.Is(err, plumbing.ErrObjectNotFound) {
					t.Errorf("the pack of %s holds the later commit %s (%v)", f.first, f.second, err)
				}
			}

			if string(g.fluxConfig) != "{}" {
				t.Errorf("flux config %q, want {}", g.fluxConfig)
			}
			wantAnn := map[string]string{
				"org.opencontainers.image.source":   f.url,
				"org.opencontainers.image.revision": tc.revision + "sha1:" + tc.commit,
				"org.opencontainers.image.created":  "2026-01-01T00:00:00Z",
			}
			if len(g.flux.Annotations) != len(wantAnn) {
				t.Errorf("flux annotations %v, want %v", g.flux.Annotations, wantAnn)
			}
			for k, v := range wantAnn {
				if g.flux.Annotations[k] != v {
					t.Errorf("flux annotation %s = %q, want %q", k, g.flux.Annotations[k], v)
				}
			}
			gitEqualFiles(t, gitTarFiles(t, g.tgz), tc.tree)

			if !strings.Contains(logs, "resolved git source") || !strings.Contains(logs, "commit="+tc.commit) || strings.Count(logs, "\n") != 1 {
				t.Errorf("log: %q", logs)
			}
			t.Logf("%s -> %s: pack %d bytes, tree %d bytes", tc.name, tc.commit[:12], len(g.packfile), len(g.tgz))
		})
	}
}

func TestGitPaths(t *testing.T) {
	f := newGitFixture(t)
	all, allLayout, _ := gitFetch(t, spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "main"}})
	cases := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"none", nil, []string{"clusters/", "clusters/prod/", "clusters/prod/app.yaml", "clusters/prod/extra.yaml", "clusters/staging/", "clusters/staging/app.yaml", "infra/", "infra/namespaces.yaml"}},
		{"one folder", []string{"clusters/prod"}, []string{"clusters/", "clusters/prod/", "clusters/prod/app.yaml", "clusters/prod/extra.yaml"}},
		{"two, untidy", []string{"./clusters/prod/", "infra"}, []string{"clusters/", "clusters/prod/", "clusters/prod/app.yaml", "clusters/prod/extra.yaml", "infra/", "infra/namespaces.yaml"}},
		{"one file", []string{"clusters/staging/app.yaml"}, []string{"clusters/", "clusters/staging/", "clusters/staging/app.yaml"}},
		{"the top", []string{"."}, []string{"clusters/", "clusters/prod/", "clusters/prod/app.yaml", "clusters/prod/extra.yaml", "clusters/staging/", "clusters/staging/app.yaml", "infra/", "infra/namespaces.yaml"}},
	}
	allPack := gitRead(t, allLayout, all).packDesc.Digest
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			item, l, _ := gitFetch(t, spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "main"}, Paths: tc.paths})
			g := gitRead(t, l, item)
			files := gitTarFiles(t, g.tgz)
			want := map[string]string{}
			for _, name := range tc.want {
				want[name] = gitTreeSecond[name]
			}
			gitEqualFiles(t, files, want)
			if g.packDesc.Digest != allPack {
				t.Errorf("paths changed the pack manifest: %s, without paths %s", g.packDesc.Digest, allPack)
			}
		})
	}
}

// gitBlobs returns every blob file of a layout by digest.
func gitBlobs(t *testing.T, l *bundle.Layout) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dir := filepath.Join(l.Dir(), "blobs", "sha256")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[d.Name()] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGitDeterministicAndBundle(t *testing.T) {
	f := newGitFixture(t)
	src := spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "main"}, Paths: []string{"clusters"}}
	one, l1, _ := gitFetch(t, src)
	two, l2, _ := gitFetch(t, src)
	if one.Descriptor.Digest != two.Descriptor.Digest || one.Revision != two.Revision {
		t.Fatalf("two fetches of one commit: roots %s and %s", one.Descriptor.Digest, two.Descriptor.Digest)
	}
	b1, b2 := gitBlobs(t, l1), gitBlobs(t, l2)
	if len(b1) != 7 || len(b1) != len(b2) {
		t.Fatalf("%d and %d blobs, want 7 each (index, 2 manifests, 2 configs, pack, tar.gz)", len(b1), len(b2))
	}
	for name, b := range b1 {
		if !bytes.Equal(b2[name], b) {
			t.Fatalf("blob %s differs between two fetches", name)
		}
	}
	g1, g2 := gitRead(t, l1, one), gitRead(t, l2, two)
	if !bytes.Equal(g1.packfile, g2.packfile) || !bytes.Equal(g1.tgz, g2.tgz) {
		t.Fatal("pack or tree differs between two fetches")
	}

	// Fetching into a layout that holds it all already changes nothing.
	again, err := fetch.Git(context.Background(), l1, src, nil)
	if err != nil || again.Descriptor.Digest != one.Descriptor.Digest {
		t.Fatalf("second fetch into the same layout: %v, root %s", err, again.Descriptor.Digest)
	}

	// The item is a valid bundle item: Write re-reads and verifies the whole graph.
	created := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	root, err := bundle.Write(context.Background(), l1, &bundle.Bundle{Sequence: 1, Created: created, Expires: created.Add(24 * time.Hour), Items: []bundle.Item{one}}, nil)
	if err != nil {
		t.Fatalf("bundle of the git item: %v", err)
	}
	res, err := bundle.ReadLayout(context.Background(), l1.Dir())
	if err != nil {
		t.Fatal(err)
	}
	got := res.Bundle.Item("platform")
	if res.Root.Digest != root.Digest || got == nil || got.Descriptor.Digest != one.Descriptor.Digest || got.Revision != f.second || got.Source != f.url || res.Blobs != 8 {
		t.Fatalf("bundle read back: root %s, item %+v, %d blobs", res.Root.Digest, got, res.Blobs)
	}
	t.Logf("same commit, same bytes: root %s; bundle %s with %d blobs", one.Descriptor.Digest, root.Digest, res.Blobs)
}

// gitCLI runs the git CLI in dir with fixed identities and dates.
func gitCLI(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Ferry Test", "GIT_AUTHOR_EMAIL=test@ferry.invalid", "GIT_AUTHOR_DATE=2026-02-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Ferry Test", "GIT_COMMITTER_EMAIL=test@ferry.invalid", "GIT_COMMITTER_DATE=2026-02-01T00:00:00Z",
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestGitTreeLinksAndModes(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	g := testenv.NewGitServer(t)
	work := t.TempDir()
	gitCLI(t, work, "init", "--quiet", "--initial-branch=main", ".")
	files := map[string]string{"app.yaml": "kind: ConfigMap\n", "bin/run.sh": "#!/bin/sh\necho run\n"}
	testenv.WriteFiles(t, work, files)
	if err := os.Chmod(filepath.Join(work, "bin", "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"deploy/current":  "../app.yaml",     // inside
		"deploy/dangling": "missing.yaml",    // inside, though nothing is there
		"here":            ".",               // inside: the top
		"abs":             "/etc/passwd",     // absolute
		"up":              "../outside",      // above the top
		"escape":          "here/../outside", // out through "here"
		"loop":            "loop",            // never resolves
	}
	for name, target := range links {
		p := filepath.Join(work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	gitCLI(t, work, "add", "--all")
	gitCLI(t, work, "commit", "--quiet", "-m", "links and modes")
	gitCLI(t, work, "clone", "--quiet", "--bare", work, filepath.Join(g.Root, "links.git"))

	item, l, logs := gitFetch(t, spec.Git{Name: "links", URL: g.RepoURL("links"), Ref: spec.GitRef{Branch: "main"}})
	gr := gitRead(t, l, item)
	gitEqualFiles(t, gitTarFiles(t, gr.tgz), map[string]string{
		"app.yaml":        files["app.yaml"],
		"bin/":            "dir",
		"bin/run.sh":      files["bin/run.sh"],
		"deploy/":         "dir",
		"deploy/current":  "-> ../app.yaml",
		"deploy/dangling": "-> missing.yaml",
		"here":            "-> .",
	})
	modes := map[string]int64{}
	for _, e := range gitReadTar(t, gr.tgz) {
		modes[e.hdr.Name] = e.hdr.Mode
	}
	if modes["bin/run.sh"] != 0o755 || modes["app.yaml"] != 0o644 || modes["bin/"] != 0o755 {
		t.Errorf("modes: run.sh %o, app.yaml %o, bin/ %o", modes["bin/run.sh"], modes["app.yaml"], modes["bin/"])
	}
	for _, skipped := range []string{"abs", "up", "escape", "loop"} {
		if !strings.Contains(logs, "skipped a symlink") || !strings.Contains(logs, "path="+skipped+" ") {
			t.Errorf("no log line for the skipped link %s:\n%s", skipped, logs)
		}
	}
	if n := strings.Count(logs, "skipped a symlink"); n != 4 {
		t.Errorf("%d links skipped, want 4:\n%s", n, logs)
	}
}

// gitErr asserts err names the source as "git <name> (<url>): " and contains each of want.
func gitErr(t *testing.T, err error, name, url string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	prefix := "git " + name + " (" + url + "): "
	if !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("error %q does not start with %q", err, prefix)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestGitErrors(t *testing.T) {
	f := newGitFixture(t)
	cases := []struct {
		name string
		src  spec.Git
		url  string // as the error shows it; f.url when ""
		want []string
	}{
		{"unknown branch", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "mian"}}, "",
			[]string{`branch "mian" not found; branches: dev, main`}},
		{"unknown tag", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Tag: "v9.9.9"}}, "",
			[]string{`tag "v9.9.9" not found; tags: stable, v1.0.0, v1.2.0, v2.0.0, v3`}},
		{"semver matches nothing", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{SemVer: ">=5.0.0"}}, "",
			[]string{`no tag matches semver ">=5.0.0"; semver tags: v2.0.0, v1.2.0, v1.0.0`}},
		{"semver not a range", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{SemVer: "not a range"}}, "",
			[]string{`semver "not a range" is not a range`}},
		{"unknown commit", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Commit: "0123456789abcdef0123456789abcdef01234567"}}, "",
			[]string{"commit 0123456789abcdef0123456789abcdef01234567 not found in any branch or tag"}},
		{"short commit", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Commit: f.first[:12]}}, "",
			[]string{"is not a full 40-character commit hash"}},
		{"no ref", spec.Git{Name: "platform", URL: f.url}, "",
			[]string{"no ref"}},
		{"path matches nothing", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "main"}, Paths: []string{"clusters/dev"}}, "",
			[]string{`path "clusters/dev" matches nothing at commit ` + f.second}},
		{"path outside", spec.Git{Name: "platform", URL: f.url, Ref: spec.GitRef{Branch: "main"}, Paths: []string{"../x"}}, "",
			[]string{`path "../x" is not inside the repository`}},
		{"no such repository", spec.Git{Name: "missing", URL: f.srv.RepoURL("missing"), Ref: spec.GitRef{Branch: "main"}}, f.srv.RepoURL("missing"),
			[]string{"list refs: repository not found"}},
		{"unreachable", spec.Git{Name: "gone", URL: "http://127.0.0.1:1/x.git", Ref: spec.GitRef{Branch: "main"}}, "http://127.0.0.1:1/x.git",
			[]string{"list refs:", "connection refused"}},
		{"unreachable, credentials not shown", spec.Git{Name: "gone", URL: "http://ferry:hunter2@127.0.0.1:1/x.git", Ref: spec.GitRef{Branch: "main"}}, "http://127.0.0.1:1/x.git",
			[]string{"list refs:"}},
		{"not a URL", spec.Git{Name: "bad", URL: "https://ferry:hunter2@exa mple/x.git", Ref: spec.GitRef{Branch: "main"}}, "invalid URL",
			[]string{"URL is not a valid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := bundle.NewLayout(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			start := time.Now()
			_, err = fetch.Git(context.Background(), l, tc.src, &fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to fail", d)
			}
			u := tc.url
			if u == "" {
				u = f.url
			}
			gitErr(t, err, tc.src.Name, u, tc.want...)
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(logs.String(), "hunter2") {
				t.Errorf("a password shows: %v\n%s", err, logs.String())
			}
			t.Log(err)
		})
	}
}

// A server that accepts and never answers: the context bounds the wait.
func TestGitHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	l, err := bundle.NewLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String() + "/silent.git"
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = fetch.Git(ctx, l, spec.Git{Name: "silent", URL: u, Ref: spec.GitRef{Branch: "main"}}, nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with a 500ms context", d)
	}
	gitErr(t, err, "silent", u, "list refs:")
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline exceeded") && !strings.Contains(err.Error(), "context") {
		t.Errorf("error does not say the context ended: %v", err)
	}
}

func TestGitCredentials(t *testing.T) {
	f := newGitFixture(t)
	// The token has characters a URL must escape, as git credential-store writes them.
	const user, token = "ferry", "s3cr3t@t0ken/x"
	upstream, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="ferry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(auth.Close)
	host := strings.TrimPrefix(auth.URL, "http://")
	plain := auth.URL + "/platform.git"
	withUser := func(scheme string, u *url.Userinfo, host, path string) string {
		return (&url.URL{Scheme: scheme, User: u, Host: host, Path: path}).String()
	}
	good := url.UserPassword(user, token)

	cases := []struct {
		name  string
		url   string
		creds string // ~/.git-credentials; none when ""
		ok    bool
	}{
		{"none", plain, "", false},
		{"in the URL", withUser("http", good, host, "/platform.git"), "", true},
		{"wrong password in the URL", withUser("http", url.UserPassword(user, "nope"), host, "/platform.git"), "", false},
		{"credential store", plain, withUser("https", url.UserPassword("other", "x"), "git.example", "") + "\n" + withUser("http", good, host, "") + "\n", true},
		{"credential store, entry with a path", plain, withUser("http", good, host, "/platform.git") + "\n", true},
		{"credential store, user in the URL", withUser("http", url.User(user), host, "/platform.git"), withUser("http", good, host, "") + "\n", true},
		{"credential store, other host", plain, withUser("http", good, "git.example", "") + "\n", false},
		{"credential store, other scheme", plain, withUser("https", good, host, "") + "\n", false},
		{"credential store, other user", withUser("http", url.User("someone"), host, "/platform.git"), withUser("http", good, host, "") + "\n", false},
		{"credential store, wrong password", plain, withUser("http", url.UserPassword(user, "wrong"), host, "") + "\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			if tc.creds != "" {
				if err := os.WriteFile(filepath.Join(home, ".git-credentials"), []byte(tc.creds), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err := bundle.NewLayout(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			item, err := fetch.Git(context.Background(), l, spec.Git{Name: "private", URL: tc.url, Ref: spec.GitRef{Branch: "main"}},
				&fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if item.Source != plain || item.Revision != f.second {
					t.Errorf("item source %q revision %s, want %s at %s", item.Source, item.Revision, plain, f.second)
				}
			} else {
				gitErr(t, err, "private", plain, "authentication required")
			}
			secrets := []string{token, url.QueryEscape(token), url.PathEscape(token), good.String()}
			for _, s := range secrets {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Errorf("error shows the token: %v", err)
				}
				if strings.Contains(logs.String(), s) {
					t.Errorf("log shows the token: %s", logs.String())
				}
				for name, b := range gitBlobs(t, l) {
					if bytes.Contains(b, []byte(s)) {
						t.Errorf("blob %s holds the token", name)
					}
				}
			}
		})
	}
}

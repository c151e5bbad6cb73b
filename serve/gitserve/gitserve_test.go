package gitserve_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/serve/gitserve"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/spec"
	"github.com/ferry-gitops/ferry/verify"
)

// created is the creation time of the bundles written here; the policy's clock is an hour later.
var created = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// signer is an ECDSA key that signs bundles and the policy that trusts it.
type signer struct {
	sv     signature.SignerVerifier
	policy verify.Policy
}

func newSigner(t testing.TB) signer {
	t.Helper()
	k := testbundle.NewSigner(t)
	return signer{sv: k.SV, policy: verify.Policy{Keys: []verify.TrustedKey{k.Key("ops")}, Now: func() time.Time { return created.Add(time.Hour) }}}
}

// writeBundle carries the Git sources the way mirror does (fetch.Git into a layout) and writes
// a signed bundle of them; it returns the layout's directory and the bundle's root digest.
func (s signer) writeBundle(t testing.TB, seq uint64, previous digest.Digest, srcs ...spec.Git) (string, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := bundle.NewLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Sequence: seq, Created: created, Expires: created.Add(30 * 24 * time.Hour), Previous: previous}
	for _, src := range srcs {
		item, err := fetch.Git(ctx, l, src, &fetch.Options{})
		if err != nil {
			t.Fatalf("fetch %s: %v", src.Name, err)
		}
		b.Items = append(b.Items, item)
	}
	root, _, err := b.Descriptor()
	if err != nil {
		t.Fatal(err)
	}
	att, err := signing.Sign(ctx, l, root, s.sv)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = bundle.Write(ctx, l, b, []ocispec.Descriptor{att}); err != nil {
		t.Fatal(err)
	}
	return dir, root.Digest
}

// importBundle imports the bundle in dir into c.
func (s signer) importBundle(t testing.TB, c *cache.Cache, dir string) {
	t.Helper()
	read := func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return bundle.ReadLayout(context.Background(), dir, opts...)
	}
	if _, err := c.Import(context.Background(), read, s.policy); err != nil {
		t.Fatalf("import %s: %v", dir, err)
	}
}

func openCache(t testing.TB) *cache.Cache {
	t.Helper()
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// snapshot takes a snapshot of c's current bundle.
func snapshot(t testing.TB, c *cache.Cache) *cache.Snapshot {
	t.Helper()
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// gitCLI runs the stock git client with no system or user configuration.
type gitCLI struct{ home string }

func newGitCLI(t testing.TB) gitCLI { return gitCLI{home: t.TempDir()} }

func (g gitCLI) run(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.home, "XDG_CONFIG_HOME="+g.home,
		"GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=Ferry Test", "GIT_AUTHOR_EMAIL=test@ferry.invalid",
		"GIT_COMMITTER_NAME=Ferry Test", "GIT_COMMITTER_EMAIL=test@ferry.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (g gitCLI) must(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := g.run(dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readFile reads a file of a checkout.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// upstream is a Git server's repository "platform" with three commits and a tag at the second.
type upstream struct {
	c1, c2, c3 string
}

// served is a Ferry Git server over a cache holding one bundle of upstream's items
// platform (branch main), release (tag v1.0.0) and pinned (the first commit), with the
// upstream server stopped.
type served struct {
	upstream
	url  string
	logs *testenv.SyncBuffer
	srv  *gitserve.Server
}

func serveFixture(t *testing.T) served { return serveFixtureWith(t, gitserve.Limits{}) }

// serveFixtureWith is serveFixture with limits.
func serveFixtureWith(t *testing.T, limits gitserve.Limits) served {
	t.Helper()
	ctx := context.Background()
	g := testenv.NewGitServer(t)
	var u upstream
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	u.c1, err = g.CreateRepo(ctx, "platform", map[string]string{"clusters/prod/app.yaml": "replicas: 1\n", "README.md": "platform\n"})
	must(err)
	u.c2, err = g.Commit(ctx, "platform", map[string]string{"clusters/prod/app.yaml": "replicas: 2\n"}, "scale to two")
	must(err)
	must(g.Tag(ctx, "platform", "v1.0.0"))
	u.c3, err = g.Commit(ctx, "platform", map[string]string{"clusters/prod/app.yaml": "replicas: 3\n", "apps/web.yaml": "kind: Deployment\n"}, "add web")
	must(err)
	s := newSigner(t)
	url := g.RepoURL("platform")
	dir, _ := s.writeBundle(t, 1, "",
		spec.Git{Name: "platform", URL: url, Ref: spec.GitRef{Branch: "main"}},
		spec.Git{Name: "release", URL: url, Ref: spec.GitRef{Tag: "v1.0.0"}},
		spec.Git{Name: "pinned", URL: url, Ref: spec.GitRef{Commit: u.c1}},
	)
	must(g.Stop())
	c := openCache(t)
	s.importBundle(t, c, dir)
	logs := &testenv.SyncBuffer{}
	srv, err := gitserve.NewWithLimits(ctx, snapshot(t, c), t.TempDir(), slog.New(slog.NewTextHandler(logs, nil)), limits)
	must(err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return served{upstream: u, url: hs.URL, logs: logs, srv: srv}
}

// Stock git and go-git clone and fetch the served repositories and get exactly the carried
// commits, at the refs the items resolved.
func TestClients(t *testing.T) {
	f := serveFixture(t)
	g := newGitCLI(t)
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"git clone branch", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "platform")
			g.must(t, "", "clone", "--quiet", f.url+"/platform.git", dir)
			if head := g.must(t, dir, "rev-parse", "HEAD"); head != f.c3 {
				t.Fatalf("HEAD %s, want %s", head, f.c3)
			}
			if ref := g.must(t, dir, "symbolic-ref", "HEAD"); ref != "refs/heads/main" {
				t.Fatalf("HEAD is %s, want refs/heads/main", ref)
			}
			if n := g.must(t, dir, "rev-list", "--count", "HEAD"); n != "3" {
				t.Fatalf("%s commits, want 3", n)
			}
			if got := readFile(t, filepath.Join(dir, "apps/web.yaml")); got != "kind: Deployment\n" {
				t.Fatalf("apps/web.yaml = %q", got)
			}
			if got := readFile(t, filepath.Join(dir, "clusters/prod/app.yaml")); got != "replicas: 3\n" {
				t.Fatalf("app.yaml = %q", got)
			}
			g.must(t, dir, "fsck", "--strict", "--no-dangling")
			// Fetching the same ref again finds nothing new and keeps the commit.
			g.must(t, dir, "fetch", "origin", "main")
			if got := g.must(t, dir, "rev-parse", "origin/main", "FETCH_HEAD"); got != f.c3+"\n"+f.c3 {
				t.Fatalf("after a second fetch: %q, want %s twice", got, f.c3)
			}
		}},
		{"git fetch into an empty repository", func(t *testing.T) {
			dir := t.TempDir()
			g.must(t, dir, "init", "--quiet")
			g.must(t, dir, "fetch", "--quiet", f.url+"/platform.git", "refs/heads/main:refs/remotes/ferry/main")
			if got := g.must(t, dir, "rev-parse", "refs/remotes/ferry/main"); got != f.c3 {
				t.Fatalf("fetched %s, want %s", got, f.c3)
			}
			g.must(t, dir, "fetch", "--quiet", f.url+"/platform.git", "refs/heads/main:refs/remotes/ferry/main")
		}},
		{"git clone tag", func(t *testing.T) {
			refs := g.must(t, "", "ls-remote", f.url+"/release.git")
			if want := f.c2 + "\tHEAD\n" + f.c2 + "\trefs/tags/v1.0.0"; refs != want {
				t.Fatalf("ls-remote:\n%s\nwant:\n%s", refs, want)
			}
			dir := filepath.Join(t.TempDir(), "release")
			g.must(t, "", "clone", "--quiet", f.url+"/release.git", dir)
			if head := g.must(t, dir, "rev-parse", "HEAD", "v1.0.0"); head != f.c2+"\n"+f.c2 {
				t.Fatalf("HEAD and v1.0.0: %q, want %s", head, f.c2)
			}
			if got := readFile(t, filepath.Join(dir, "clusters/prod/app.yaml")); got != "replicas: 2\n" {
				t.Fatalf("app.yaml = %q", got)
			}
		}},
		{"git clone commit", func(t *testing.T) {
			refs := g.must(t, "", "ls-remote", f.url+"/pinned.git")
			if want := f.c1 + "\tHEAD\n" + f.c1 + "\t" + gitserve.CommitRef; refs != want {
				t.Fatalf("ls-remote:\n%s\nwant:\n%s", refs, want)
			}
			dir := filepath.Join(t.TempDir(), "pinned")
			g.must(t, "", "clone", "--quiet", f.url+"/pinned.git", dir)
			if head := g.must(t, dir, "rev-parse", "HEAD"); head != f.c1 {
				t.Fatalf("HEAD %s, want %s", head, f.c1)
			}
			if got := readFile(t, filepath.Join(dir, "clusters/prod/app.yaml")); got != "replicas: 1\n" {
				t.Fatalf("app.yaml = %q", got)
			}
		}},
		{"git clone shallow, then deepen", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shallow")
			g.must(t, "", "clone", "--quiet", "--depth", "1", f.url+"/platform.git", dir)
			if head := g.must(t, dir, "rev-parse", "HEAD"); head != f.c3 {
				t.Fatalf("HEAD %s, want %s", head, f.c3)
			}
			if n := g.must(t, dir, "rev-list", "--count", "HEAD"); n != "1" {
				t.Fatalf("%s commits in a depth 1 clone", n)
			}
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, ".git", "shallow"))); got != f.c3 {
				t.Fatalf(".git/shallow = %q, want %s", got, f.c3)
			}
			g.must(t, dir, "fetch", "--quiet", "--depth", "2")
			if n := g.must(t, dir, "rev-list", "--count", "HEAD"); n != "2" {
				t.Fatalf("%s commits after deepening to 2, want 2", n)
			}
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, ".git", "shallow"))); got != f.c2 {
				t.Fatalf(".git/shallow = %q, want %s", got, f.c2)
			}
			g.must(t, dir, "fetch", "--quiet", "--unshallow")
			if n := g.must(t, dir, "rev-list", "--count", "HEAD"); n != "3" {
				t.Fatalf("%s commits after unshallow, want 3", n)
			}
			if _, err := os.Stat(filepath.Join(dir, ".git", "shallow")); !os.IsNotExist(err) {
				t.Fatalf("still shallow after --unshallow: %v", err)
			}
			g.must(t, dir, "fsck", "--strict", "--no-dangling")
		}},
		{"go-git clone", func(t *testing.T) {
			r, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{URL: f.url + "/platform.git"})
			if err != nil {
				t.Fatal(err)
			}
			head, err := r.Head()
			if err != nil || head.Hash().String() != f.c3 || head.Name() != "refs/heads/main" {
				t.Fatalf("HEAD %v %v, want refs/heads/main at %s", head, err, f.c3)
			}
			commits, err := r.Log(&git.LogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			commits.ForEach(func(*object.Commit) error { n++; return nil })
			if n != 3 {
				t.Fatalf("%d commits, want 3", n)
			}
		}},
		{"go-git shallow clone of a tag, as Flux clones", func(t *testing.T) {
			dir := t.TempDir()
			r, err := git.PlainClone(dir, false, &git.CloneOptions{URL: f.url + "/release.git",
				ReferenceName: plumbing.NewTagReferenceName("v1.0.0"), SingleBranch: true, Depth: 1, Tags: git.NoTags})
			if err != nil {
				t.Fatal(err)
			}
			head, err := r.Head()
			if err != nil || head.Hash().String() != f.c2 {
				t.Fatalf("HEAD %v %v, want %s", head, err, f.c2)
			}
			if got := readFile(t, filepath.Join(dir, "clusters/prod/app.yaml")); got != "replicas: 2\n" {
				t.Fatalf("app.yaml = %q", got)
			}
		}},
		{"go-git shallow clone of a branch", func(t *testing.T) {
			r, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{URL: f.url + "/platform.git",
				ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true, Depth: 1})
			if err != nil {
				t.Fatal(err)
			}
			head, err := r.Head()
			if err != nil || head.Hash().String() != f.c3 {
				t.Fatalf("HEAD %v %v, want %s", head, err, f.c3)
			}
			// Fetching again finds the same commit.
			if err := r.Fetch(&git.FetchOptions{Depth: 1}); err != nil && err != git.NoErrAlreadyUpToDate {
				t.Fatal(err)
			}
		}},
		{"git push is refused", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "push")
			g.must(t, "", "clone", "--quiet", f.url+"/platform.git", dir)
			g.must(t, dir, "commit", "--quiet", "--allow-empty", "-m", "local change")
			out, err := g.run(dir, "push", "origin", "HEAD:main")
			if err == nil {
				t.Fatalf("push succeeded: %s", out)
			}
			if !strings.Contains(out, "403") || !strings.Contains(out, "read-only") {
				t.Fatalf("push refused without a 403 saying read-only: %s", out)
			}
		}},
		{"an unknown repository is not found", func(t *testing.T) {
			out, err := g.run("", "clone", f.url+"/nope.git", filepath.Join(t.TempDir(), "nope"))
			if err == nil {
				t.Fatalf("clone of an unknown repository succeeded: %s", out)
			}
			if !strings.Contains(out, "not found") {
				t.Fatalf("clone failed without saying not found: %s", out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
	logs := f.logs.String()
	for _, want := range []string{"method=GET path=/platform.git/info/refs service=git-upload-pack status=200 bytes=",
		"method=POST path=/platform.git/git-upload-pack service=\"\" status=200", "path=/nope.git/info/refs service=git-upload-pack status=404",
		"status=403", "duration="} {
		if !strings.Contains(logs, want) {
			t.Errorf("the request log lacks %q:\n%s", want, logs)
		}
	}
}

// pktLine encodes one pkt-line.
func pktLine(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

func gzipped(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The HTTP surface: what is served, what is refused and with which status.
func TestHTTP(t *testing.T) {
	f := serveFixture(t)
	want := pktLine("want "+f.c3+" ofs-delta agent=git/2\n") + "0000" + pktLine("done\n")
	cases := []struct {
		name, method, path, contentType, encoding string
		body                                      []byte
		status                                    int
		resultType                                string
		prefix                                    string
	}{
		{name: "advertisement", method: "GET", path: "/platform.git/info/refs?service=git-upload-pack", status: 200,
			resultType: "application/x-git-upload-pack-advertisement", prefix: "001e# service=git-upload-pack\n0000"},
		{name: "dumb protocol", method: "GET", path: "/platform.git/info/refs", status: 404, resultType: "text/plain; charset=utf-8"},
		{name: "dumb object", method: "GET", path: "/platform.git/HEAD", status: 404, resultType: "text/plain; charset=utf-8"},
		{name: "receive-pack advertisement", method: "GET", path: "/platform.git/info/refs?service=git-receive-pack", status: 403,
			resultType: "text/plain; charset=utf-8", prefix: "platform.git is read-only"},
		{name: "receive-pack", method: "POST", path: "/platform.git/git-receive-pack", contentType: "application/x-git-receive-pack-request",
			status: 403, resultType: "text/plain; charset=utf-8"},
		{name: "unknown repository", method: "GET", path: "/nope.git/info/refs?service=git-upload-pack", status: 404,
			resultType: "text/plain; charset=utf-8", prefix: "repository nope.git not found"},
		{name: "root", method: "GET", path: "/", status: 404, resultType: "text/plain; charset=utf-8"},
		{name: "upload-pack by GET", method: "GET", path: "/platform.git/git-upload-pack", status: 405, resultType: "text/plain; charset=utf-8"},
		{name: "upload-pack", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			body: []byte(want), status: 200, resultType: "application/x-git-upload-pack-result", prefix: "0008NAK\nPACK"},
		{name: "upload-pack gzip", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			encoding: "gzip", body: gzipped(t, want), status: 200, resultType: "application/x-git-upload-pack-result", prefix: "0008NAK\nPACK"},
		{name: "upload-pack of an unknown object", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			body: []byte(pktLine("want "+strings.Repeat("ab", 20)+" ofs-delta\n") + "0000" + pktLine("done\n")), status: 200,
			resultType: "application/x-git-upload-pack-result", prefix: "004aERR upload-pack: not our ref abab"},
		{name: "upload-pack garbage", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			body: []byte("hello"), status: 400, resultType: "text/plain; charset=utf-8"},
		{name: "upload-pack too large", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			body: bytes.Repeat([]byte("0"), gitserve.MaxRequestBody+1), status: 413, resultType: "text/plain; charset=utf-8"},
		{name: "upload-pack gzip bomb", method: "POST", path: "/platform.git/git-upload-pack", contentType: "application/x-git-upload-pack-request",
			encoding: "gzip", body: gzipped(t, strings.Repeat("0", gitserve.MaxRequestBody+1)), status: 413, resultType: "text/plain; charset=utf-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, f.url+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.resultType {
				t.Fatalf("%d %s, want %d %s: %.200q", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.resultType, body)
			}
			if !strings.HasPrefix(string(body), tc.prefix) {
				t.Fatalf("body %.200q does not start with %q", body, tc.prefix)
			}
			if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
				t.Fatalf("Cache-Control %q", cc)
			}
		})
	}
}

// After a newer bundle is imported and Reload runs, git fetch gets the new commit; until then
// the served set is the old one. Repositories are built once per pack and survive a restart;
// a damaged one is rebuilt. Clones running during reloads all succeed.
func TestReload(t *testing.T) {
	ctx := context.Background()
	g := testenv.NewGitServer(t)
	old, err := g.CreateRepo(ctx, "platform", map[string]string{"README.md": "platform\n"})
	if err != nil {
		t.Fatal(err)
	}
	// Enough history that the client's haves take more than one negotiation round.
	for i := range 40 {
		if old, err = g.Commit(ctx, "platform", map[string]string{fmt.Sprintf("history/%02d.txt", i): fmt.Sprintf("%d\n", i)}, fmt.Sprintf("step %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	s := newSigner(t)
	src := spec.Git{Name: "platform", URL: g.RepoURL("platform"), Ref: spec.GitRef{Branch: "main"}}
	dir1, root1 := s.writeBundle(t, 1, "", src)
	newer, err := g.Commit(ctx, "platform", map[string]string{"clusters/prod/app.yaml": "replicas: 9\n"}, "scale to nine")
	if err != nil {
		t.Fatal(err)
	}
	dir2, _ := s.writeBundle(t, 2, root1, src)
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}

	c := openCache(t)
	s.importBundle(t, c, dir1)
	work := t.TempDir()
	logs := &testenv.SyncBuffer{}
	srv, err := gitserve.New(ctx, snapshot(t, c), work, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	url := hs.URL + "/platform.git"
	cli := newGitCLI(t)
	clone := filepath.Join(t.TempDir(), "platform")
	cli.must(t, "", "clone", "--quiet", url, clone)
	if head := cli.must(t, clone, "rev-parse", "HEAD"); head != old {
		t.Fatalf("cloned %s, want %s", head, old)
	}

	s.importBundle(t, c, dir2)
	if refs := cli.must(t, "", "ls-remote", url, "refs/heads/main"); !strings.HasPrefix(refs, old) {
		t.Fatalf("before Reload, main is %q, want %s", refs, old)
	}
	if err := srv.Reload(ctx, snapshot(t, c)); err != nil {
		t.Fatal(err)
	}
	cli.must(t, clone, "fetch", "--quiet", "origin")
	if got := cli.must(t, clone, "rev-parse", "origin/main"); got != newer {
		t.Fatalf("after Reload, fetched %s, want %s", got, newer)
	}
	cli.must(t, clone, "merge", "--quiet", "--ff-only", "origin/main")
	if got := readFile(t, filepath.Join(clone, "clusters/prod/app.yaml")); got != "replicas: 9\n" {
		t.Fatalf("app.yaml = %q", got)
	}
	cli.must(t, clone, "fsck", "--strict", "--no-dangling")
	if rounds := strings.Count(logs.String(), "path=/platform.git/git-upload-pack"); rounds < 3 {
		t.Fatalf("%d upload-pack requests: the fetch did not negotiate over several rounds", rounds)
	}

	// The repositories live in the server's own directory: the one of each pack served now and
	// before (requests may still read it); the next reload removes the one no longer served.
	own := srv.WorkDir()
	if filepath.Dir(own) != work {
		t.Fatalf("the server's directory %s is not in the work directory %s", own, work)
	}
	countPacks := func(dir string) int {
		idx, err := filepath.Glob(filepath.Join(dir, "*", "objects", "pack", "*.idx"))
		if err != nil {
			t.Fatal(err)
		}
		return len(idx)
	}
	if n := countPacks(own); n != 2 {
		t.Fatalf("work directory holds %d pack indexes after one reload, want 2", n)
	}
	if err := srv.Reload(ctx, snapshot(t, c)); err != nil {
		t.Fatal(err)
	}
	if n := countPacks(own); n != 1 {
		t.Fatalf("work directory holds %d pack indexes once the first bundle is no longer served, want 1", n)
	}
	if !strings.Contains(logs.String(), "removed git repository no longer served") {
		t.Fatalf("the pruning is not logged:\n%s", logs.String())
	}
	// A second server beside it builds in a directory of its own and leaves the first's alone.
	var logs2 bytes.Buffer
	srv2, err := gitserve.New(ctx, snapshot(t, c), work, slog.New(slog.NewTextHandler(&logs2, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs2.String(), "built git repository"); n != 1 || srv2.WorkDir() == own || countPacks(own) != 1 {
		t.Fatalf("second server: %d repositories built in %s (first: %s, %d packs):\n%s", n, srv2.WorkDir(), own, countPacks(own), logs2.String())
	}
	if err := srv2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv2.WorkDir()); !os.IsNotExist(err) {
		t.Fatalf("Close left %s: %v", srv2.WorkDir(), err)
	}

	// Clones during reloads see one whole set or the other, never an error.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := git.PlainClone(t.TempDir(), true, &git.CloneOptions{URL: url})
			if err != nil {
				errs <- err
				return
			}
			if head, err := r.Head(); err != nil || head.Hash().String() != newer {
				errs <- fmt.Errorf("concurrent clone: HEAD %v %v, want %s", head, err, newer)
			}
		}()
	}
	for range 5 {
		if err := srv.Reload(ctx, snapshot(t, c)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

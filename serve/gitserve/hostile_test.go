package gitserve_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/serve/gitserve"
	"github.com/ferry-gitops/ferry/spec"
)

// packBlob returns the hex digest of the bundle's Git pack (the blob that starts "PACK").
func packBlob(t *testing.T, layout string) string {
	t.Helper()
	blobs, err := filepath.Glob(filepath.Join(layout, "blobs", "sha256", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		f, err := os.Open(b)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		f.Read(head)
		f.Close()
		if string(head) == "PACK" {
			return filepath.Base(b)
		}
	}
	t.Fatal("the bundle has no pack blob")
	return ""
}

// The Git remote trusts nothing it finds in its work directory: a repository planted where an
// earlier server kept the pack's (work/<pack digest>), holding the served commit and one more
// object, is not served; the server builds its own in a new 0700 directory, from the cache.
func TestWorkDirTrustsNothingPlanted(t *testing.T) {
	ctx := context.Background()
	g := testenv.NewGitServer(t)
	c1, err := g.CreateRepo(ctx, "platform", map[string]string{"app.yaml": "replicas: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t)
	dir, _ := s.writeBundle(t, 1, "", spec.Git{Name: "platform", URL: g.RepoURL("platform"), Ref: spec.GitRef{Branch: "main"}})
	planted, err := g.Commit(ctx, "platform", map[string]string{"app.yaml": "image: evil\n"}, "planted")
	if err != nil {
		t.Fatal(err)
	}
	// The planted repository: every object of upstream (the served commit and the planted one).
	cli := newGitCLI(t)
	bare := filepath.Join(t.TempDir(), "planted.git")
	cli.must(t, "", "clone", "--quiet", "--bare", g.RepoURL("platform"), bare)
	cli.must(t, bare, "repack", "-a", "-d", "-q")
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.Rename(bare, filepath.Join(work, packBlob(t, dir))); err != nil {
		t.Fatal(err)
	}

	c := openCache(t)
	s.importBundle(t, c, dir)
	var logs bytes.Buffer
	srv, err := gitserve.New(ctx, snapshot(t, c), work, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	clone := filepath.Join(t.TempDir(), "clone")
	cli.must(t, "", "clone", "--quiet", hs.URL+"/platform.git", clone)
	if head := cli.must(t, clone, "rev-parse", "HEAD"); head != c1 {
		t.Fatalf("HEAD %s, want %s", head, c1)
	}
	if out, err := cli.run(clone, "cat-file", "-e", planted); err == nil {
		t.Fatalf("the clone holds the planted commit %s: the planted repository was served (%s)", planted, out)
	}
	fi, err := os.Stat(srv.WorkDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 || filepath.Dir(srv.WorkDir()) != work {
		t.Fatalf("the server's directory %s is %v, want 0700 in %s", srv.WorkDir(), fi.Mode().Perm(), work)
	}
	if !bytes.Contains(logs.Bytes(), []byte("built git repository")) {
		t.Fatalf("the server did not build its repository:\n%s", logs.String())
	}
}

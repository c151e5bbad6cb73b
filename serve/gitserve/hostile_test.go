package gitserve_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// uploadPackRequest posts an upload-pack body to a served repository and returns the answer.
func uploadPackRequest(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// A hostile client cannot make the server walk and delta-encode without bound: leaving out
// ofs-delta, sending one have or asking for depth 1 each costs objects of a budget, and over it
// the request is refused with an ERR saying what to do, before any pack is encoded. Within the
// budget the same requests are answered; a whole clone costs nothing.
func TestNegotiationBudget(t *testing.T) {
	f := serveFixtureWith(t, gitserve.Limits{MaxObjects: 8})
	url := f.url + "/platform.git/git-upload-pack"
	over := "ERR upload-pack: this fetch needs more than 8 objects walked or packed"
	for _, tc := range []struct{ name, body, want string }{
		{"no ofs-delta", pktLine("want "+f.c3+" agent=git/2\n") + "0000" + pktLine("done\n"), over},
		{"one have", pktLine("want "+f.c3+" ofs-delta\n") + "0000" + pktLine("have "+f.c1+"\n") + pktLine("done\n"), over},
		{"whole clone", pktLine("want "+f.c3+" ofs-delta\n") + "0000" + pktLine("done\n"), "0008NAK\nPACK"},
		{"depth 1 of the first commit", pktLine("want "+f.c1+" ofs-delta shallow\n") + pktLine("deepen 1\n") + "0000" + pktLine("done\n"), "PACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := uploadPackRequest(t, url, tc.body)
			if status != http.StatusOK || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %.300q, want it to hold %q", status, body, tc.want)
			}
		})
	}
	// The bytes packed are bounded too.
	small := serveFixtureWith(t, gitserve.Limits{MaxPackBytes: 100})
	status, body := uploadPackRequest(t, small.url+"/platform.git/git-upload-pack", pktLine("want "+small.c1+" ofs-delta shallow\n")+pktLine("deepen 1\n")+"0000"+pktLine("done\n"))
	if want := "ERR upload-pack: this fetch would pack more than 100 bytes of objects"; status != http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("depth 1 over the bytes budget: %d %.300q, want it to hold %q", status, body, want)
	}
	// git itself is told why.
	g := newGitCLI(t)
	out, err := g.run("", "clone", "--depth", "1", f.url+"/platform.git", filepath.Join(t.TempDir(), "c"))
	if err == nil || !strings.Contains(out, "more than 8 objects") {
		t.Fatalf("a shallow clone over the budget: %v: %s", err, out)
	}
}

// Requests are served within concurrency limits, per repository and over all, and each has a
// deadline: a client that holds its request open (a body that never ends) holds one turn until
// the deadline, others of the same repository are answered 503 meanwhile, other repositories
// are served, and after the deadline the repository is served again.
func TestConcurrencyAndDeadline(t *testing.T) {
	f := serveFixtureWith(t, gitserve.Limits{MaxPerRepository: 1, MaxConcurrent: 2, QueueTimeout: 200 * time.Millisecond, RequestTimeout: 2 * time.Second})
	pr, pw := io.Pipe()
	defer pw.Close()
	slow, err := http.NewRequest(http.MethodPost, f.url+"/platform.git/git-upload-pack", pr)
	if err != nil {
		t.Fatal(err)
	}
	slow.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	start := time.Now()
	go func() {
		if resp, err := http.DefaultClient.Do(slow); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte(pktLine("want " + f.c3 + " ofs-delta\n"))) // and nothing more
	get := func(repo string) (int, string) {
		resp, err := http.Get(f.url + "/" + repo + ".git/info/refs?service=git-upload-pack")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(b)
	}
	deadline := time.Now().Add(time.Second)
	for {
		status, body := get("platform")
		if status == http.StatusServiceUnavailable {
			if !strings.Contains(body, "busy") || !strings.HasPrefix(body, "5 ") {
				t.Fatalf("503 without Retry-After or saying busy: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second request of platform.git beside a held one: %d, want 503", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, body := get("release"); status != http.StatusOK {
		t.Fatalf("another repository beside the held one: %d %q", status, body)
	}
	// The server gives up reading the held body at the deadline and ends its turn.
	for !strings.Contains(f.logs.String(), `path=/platform.git/git-upload-pack service="" status=400`) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the held request is still served 10s after its 2s deadline:\n%s", f.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Fatalf("the held request ended after %s, want about its 2s deadline", d)
	}
	if status, body := get("platform"); status != http.StatusOK {
		t.Fatalf("after the held request's deadline: %d %q", status, body)
	}
}

// Errors sent to clients name no file of the server: with the served pack gone from the work
// directory, a clone fails with a message pointing at the server's log, and the log has the
// cause.
func TestErrorsNameNoPaths(t *testing.T) {
	f := serveFixture(t)
	packs, err := filepath.Glob(filepath.Join(f.srv.WorkDir(), "*", "objects", "pack", "*.pack"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs in %s: %v", f.srv.WorkDir(), err)
	}
	for _, p := range packs { // listed still, but gone when the clone opens it
		os.Remove(p)
		if err := os.Symlink(p+".gone", p); err != nil {
			t.Fatal(err)
		}
	}
	g := newGitCLI(t)
	out, err := g.run("", "clone", f.url+"/platform.git", filepath.Join(t.TempDir(), "c"))
	if err == nil {
		t.Fatalf("clone without its pack succeeded: %s", out)
	}
	if strings.Contains(out, f.srv.WorkDir()) || strings.Contains(out, "objects/pack") {
		t.Fatalf("the client is told the server's paths: %s", out)
	}
	if !strings.Contains(out, "the cause is in the server's log") {
		t.Fatalf("the client is not told where the cause is: %s", out)
	}
	if !strings.Contains(f.logs.String(), "objects/pack") {
		t.Fatalf("the server's log lacks the cause:\n%s", f.logs.String())
	}
}

// The limits are on by default: with two requests of a repository held open (bodies that never
// end), a third is answered 503 once it has waited its turn for 5 seconds.
func TestDefaultConcurrencyLimit(t *testing.T) {
	f := serveFixture(t)
	for range 2 {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		req, err := http.NewRequest(http.MethodPost, f.url+"/platform.git/git-upload-pack", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		pw.Write([]byte(pktLine("want " + f.c3 + " ofs-delta\n")))
	}
	time.Sleep(200 * time.Millisecond) // both are being read
	start := time.Now()
	resp, err := http.Get(f.url + "/platform.git/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "busy") {
		t.Fatalf("a third request of platform.git beside two held ones: %d %q, want 503 busy", resp.StatusCode, b)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("refused after %s, want after its 5s wait", d)
	}
}

// The answer to a request without haves (a shallow clone, as Flux makes on every reconcile) is
// encoded once: the same request again is answered from the pack cache, byte for byte, and git
// clones from it.
func TestPackCache(t *testing.T) {
	f := serveFixture(t)
	url := f.url + "/platform.git/git-upload-pack"
	body := pktLine("want "+f.c3+" ofs-delta shallow\n") + pktLine("deepen 1\n") + "0000" + pktLine("done\n")
	_, first := uploadPackRequest(t, url, body)
	if strings.Contains(f.logs.String(), "answered from the pack cache") {
		t.Fatal("the first request was answered from the cache")
	}
	_, second := uploadPackRequest(t, url, body)
	if !strings.Contains(f.logs.String(), "answered from the pack cache") || second != first || !strings.Contains(first, "PACK") {
		t.Fatalf("the same request again was not answered from the cache, byte for byte:\n%s", f.logs.String())
	}
	g := newGitCLI(t)
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), "c")
		g.must(t, "", "clone", "--quiet", "--depth", "1", f.url+"/platform.git", dir)
		if head := g.must(t, dir, "rev-parse", "HEAD"); head != f.c3 {
			t.Fatalf("clone %d: HEAD %s, want %s", i+1, head, f.c3)
		}
		g.must(t, dir, "fsck", "--strict", "--no-dangling")
	}
	if n := strings.Count(f.logs.String(), "answered from the pack cache"); n < 2 {
		t.Fatalf("%d answers from the cache, want the second request and at least one clone's", n)
	}
}

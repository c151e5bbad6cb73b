package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// hostileRun is what one `mirror pack` against a hostile upstream did.
type hostileRun struct {
	err  error
	took time.Duration
	// peak is the largest heap the process held while pack ran, sampled every 10 ms.
	peak uint64
	out  string
}

// packHostile runs `mirror pack` on a spec (the YAML after the header) with a 60 s bound, the
// way an operator runs it, and measures its time and peak heap.
func packHostile(t *testing.T, specBody string, args ...string) hostileRun {
	t.Helper()
	dir := t.TempDir()
	specPath := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(specPath, []byte("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\n"+specBody), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var (
		peak uint64
		mu   sync.Mutex
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			if m.HeapAlloc > base.HeapAlloc && m.HeapAlloc-base.HeapAlloc > peak {
				peak = m.HeapAlloc - base.HeapAlloc
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	cmd := packCommand()
	var out, errOut bytes.Buffer
	cmd.SetArgs(append([]string{"-f", specPath, "--out", filepath.Join(dir, "bundle")}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	start := time.Now()
	err := cmd.ExecuteContext(ctx)
	took := time.Since(start)
	close(stop)
	<-sampled
	if _, statErr := os.Stat(filepath.Join(dir, "bundle", "index.json")); err != nil && statErr == nil {
		t.Errorf("a refused pack left an index.json in its output folder")
	}
	return hostileRun{err: err, took: took, peak: peak, out: out.String() + errOut.String()}
}

// refused checks that pack failed within the bound, in bounded memory, with an error naming
// the source and each of want.
func (r hostileRun) refused(t *testing.T, maxTook time.Duration, maxHeap uint64, want ...string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("mirror pack accepted a hostile upstream:\n%s", r.out)
	}
	t.Logf("refused in %s, heap peak %d MiB: %v", r.took.Round(time.Millisecond), r.peak>>20, r.err)
	for _, w := range want {
		if !strings.Contains(r.err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, r.err)
		}
	}
	if r.took > maxTook {
		t.Errorf("refused after %s, want within %s", r.took, maxTook)
	}
	if r.peak > maxHeap {
		t.Errorf("heap peaked at %d MiB, want at most %d MiB", r.peak>>20, maxHeap>>20)
	}
}

// gitPlumb runs git in dir with input on stdin and returns its trimmed output.
func gitPlumb(t *testing.T, dir, input string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(input)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=bomb", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=bomb", "GIT_COMMITTER_EMAIL=b@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitBomb creates a bare repository name.git under root whose one commit (on main) is a
// "git bomb": one blob, a tree naming it ten times, and nine levels of trees each naming the
// level below ten times. A few KiB of objects; checked out, 10^10 files.
func gitBomb(t *testing.T, root, name string) {
	t.Helper()
	bare := filepath.Join(root, name+".git")
	gitPlumb(t, root, "", "init", "--quiet", "--bare", "--initial-branch=main", bare)
	blob := gitPlumb(t, bare, "kind: ConfigMap\n", "hash-object", "-w", "--stdin")
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, "100644 blob %s\tf%d.yaml\n", blob, i)
	}
	tree := gitPlumb(t, bare, lines.String(), "mktree")
	for range 9 {
		lines.Reset()
		for i := range 10 {
			fmt.Fprintf(&lines, "040000 tree %s\td%d\n", tree, i)
		}
		tree = gitPlumb(t, bare, lines.String(), "mktree")
	}
	commit := gitPlumb(t, bare, "", "commit-tree", tree, "-m", "bomb")
	gitPlumb(t, bare, "", "update-ref", "refs/heads/main", commit)
	// Branch "beside": the bomb under bomb/, and a folder apps/ beside it.
	apps := gitPlumb(t, bare, "100644 blob "+blob+"\tcm.yaml\n", "mktree")
	top := gitPlumb(t, bare, "040000 tree "+apps+"\tapps\n040000 tree "+tree+"\tbomb\n", "mktree")
	gitPlumb(t, bare, "", "update-ref", "refs/heads/beside", gitPlumb(t, bare, "", "commit-tree", top, "-m", "beside"))
}

// A Git server serving a git bomb (smart HTTP through git http-backend): pack refuses the
// source on the tree limit after walking at most that many entries, within seconds, instead
// of expanding 10^10 files.
func TestPackRefusesGitBomb(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	git := testenv.NewGitServer(t)
	gitBomb(t, git.Root, "bomb")
	r := packHostile(t, "git:\n  - name: bomb\n    url: "+git.RepoURL("bomb")+"\n    ref: {branch: main}\n")
	r.refused(t, 20*time.Second, 256<<20, "git bomb", git.RepoURL("bomb"), "more than 100000 entries", "MaxTreeEntries")

	// Only the spec's paths are walked: a folder beside the bomb is carried.
	r = packHostile(t, "git:\n  - name: beside\n    url: "+git.RepoURL("bomb")+"\n    ref: {branch: beside}\n    paths: [apps]\n")
	if r.err != nil || r.took > 20*time.Second {
		t.Fatalf("pack of the folder beside the bomb: %v after %s\n%s", r.err, r.took, r.out)
	}

	// Folders nested past the depth limit, few entries in all.
	bare := filepath.Join(git.Root, "deep.git")
	gitPlumb(t, git.Root, "", "init", "--quiet", "--bare", "--initial-branch=main", bare)
	tree := gitPlumb(t, bare, "100644 blob "+gitPlumb(t, bare, "x\n", "hash-object", "-w", "--stdin")+"\tf\n", "mktree")
	for range 130 {
		tree = gitPlumb(t, bare, "040000 tree "+tree+"\td\n", "mktree")
	}
	gitPlumb(t, bare, "", "update-ref", "refs/heads/main", gitPlumb(t, bare, "", "commit-tree", tree, "-m", "deep"))
	r = packHostile(t, "git:\n  - name: deep\n    url: "+git.RepoURL("deep")+"\n    ref: {branch: main}\n")
	r.refused(t, 20*time.Second, 256<<20, "git deep", "folders nest more than 128 deep", "GitMaxTreeDepth")
}

// A Git server whose ref advertisement never ends: pack stops reading it at GitMaxRefsSize
// and refuses the source, in bounded memory.
func TestPackRefusesEndlessGitRefs(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		fmt.Fprintf(w, "001e# service=git-upload-pack\n0000")
		first := strings.Repeat("1", 40) + " refs/heads/main\x00ofs-delta side-band-64k\n"
		fmt.Fprintf(w, "%04x%s", 4+len(first), first)
		line := fmt.Sprintf("%04x%s refs/heads/b", 4+40+1+len("refs/heads/b")+8+1, strings.Repeat("1", 40))
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := fmt.Fprintf(w, "%s%08d\n", line, i); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/endless.git"
	r := packHostile(t, "git:\n  - name: endless\n    url: "+url+"\n    ref: {branch: main}\n")
	r.refused(t, 30*time.Second, 512<<20, "git endless", url, "GitMaxRefsSize")
}

// loopback serves h on a loopback port of its own and returns its host:port.
func loopback(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A Helm repository whose index.yaml never ends, and one whose index.yaml announces a size
// past the limit: pack reads neither past the index limit and refuses the chart.
func TestPackRefusesEndlessHelmIndex(t *testing.T) {
	endless := loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "apiVersion: v1\nentries:\n")
		line := []byte("# " + strings.Repeat("x", 1021) + "\n")
		for r.Context().Err() == nil {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}))
	r := packHostile(t, "charts:\n  - name: app\n    repository: http://"+endless+"\n    version: 1.0.0\n")
	r.refused(t, 30*time.Second, 256<<20, "chart app (http://"+endless+"/app)", "index.yaml is over the 33554432 byte limit")

	huge := loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1099511627776")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("apiVersion: v1\n"))
	}))
	r = packHostile(t, "charts:\n  - name: app\n    repository: http://"+huge+"\n    version: 1.0.0\n")
	r.refused(t, 10*time.Second, 64<<20, "chart app (http://"+huge+"/app)", "index.yaml is 1099511627776 bytes, over the 33554432 byte limit")
}

// A Helm repository whose index.yaml sends the download to another host: pack refuses it
// without a request to that host, unless the chart's allowedHosts lists it.
func TestPackRefusesHelmDownloadElsewhere(t *testing.T) {
	charts := testenv.NewHelmRepo(t)
	if _, err := charts.AddChart("app", "1.0.0", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}, nil); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		requests int
	)
	files := http.FileServer(http.Dir(charts.Dir))
	other := loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	index, err := os.ReadFile(filepath.Join(charts.Dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	index = bytes.ReplaceAll(index, []byte(charts.URL), []byte("http://"+other))
	repoHost := loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/index.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write(index)
	}))
	chart := "charts:\n  - name: app\n    repository: http://" + repoHost + "\n    version: 1.0.0\n"
	r := packHostile(t, chart)
	r.refused(t, 10*time.Second, 128<<20, "chart app (http://"+repoHost+"/app)", "index.yaml sends the download to http://"+other+"/app-1.0.0.tgz", "not the repository's host", "allowedHosts")
	if requests != 0 {
		t.Fatalf("pack sent %d requests to the host index.yaml named", requests)
	}

	// Allowed by the spec, the same download is carried.
	if r := packHostile(t, chart+"    allowedHosts: ["+other+"]\n"); r.err != nil {
		t.Fatalf("pack with allowedHosts: %v\n%s", r.err, r.out)
	}
	if requests == 0 {
		t.Fatal("pack with allowedHosts did not download the chart")
	}
}

// hostileRegistry is a registry of the test's own for repository "app": /v2/ answers, the
// tag list is served by tags, manifests and blobs from blobs (by digest; a manifest also by
// the tag "1.0.0"), and a blob handler in slow takes over that digest's download.
type hostileRegistry struct {
	// repo is the repository served (default "app").
	repo string
	tags http.HandlerFunc
	// referrers serves the referrers API (default: 404, no such API).
	referrers http.HandlerFunc
	manifest  []byte
	blobs     map[string][]byte
	slow      map[string]http.HandlerFunc
}

func (h *hostileRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo := h.repo
	if repo == "" {
		repo = "app"
	}
	p := strings.Replace(r.URL.Path, "/v2/"+repo+"/", "/v2/app/", 1)
	switch {
	case p == "/v2/" || p == "/v2":
		w.WriteHeader(http.StatusOK)
	case p == "/v2/app/tags/list" && h.tags != nil:
		h.tags(w, r)
	case strings.HasPrefix(p, "/v2/app/referrers/") && h.referrers != nil:
		h.referrers(w, r)
	case strings.HasPrefix(p, "/v2/app/manifests/"):
		ref := strings.TrimPrefix(p, "/v2/app/manifests/")
		d := digestOf(h.manifest)
		if ref != "1.0.0" && ref != d {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", d)
		w.Header().Set("Content-Length", fmt.Sprint(len(h.manifest)))
		if r.Method != http.MethodHead {
			w.Write(h.manifest)
		}
	case strings.HasPrefix(p, "/v2/app/blobs/"):
		d := strings.TrimPrefix(p, "/v2/app/blobs/")
		if s, ok := h.slow[d]; ok {
			s(w, r)
			return
		}
		b, ok := h.blobs[d]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

func digestOf(b []byte) string {
	return digest.FromBytes(b).String()
}

// imageManifest returns a manifest with a real config and one layer descriptor of the given
// digest and size, and the config's bytes.
func imageManifest(layer string, size int64) (manifest, config []byte) {
	config = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	manifest = fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]}`,
		digestOf(config), len(config), layer, size)
	return manifest, config
}

// A registry whose tag list's Link header points back at the same page: pack follows it at
// most the page limit and refuses the image, naming the listing limit.
func TestPackRefusesEndlessTagList(t *testing.T) {
	host := loopback(t, &hostileRegistry{tags: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Link", `</v2/app/tags/list?n=1&last=1.0.0>; rel="next"`)
		fmt.Fprint(w, `{"name":"app","tags":["1.0.0"]}`)
	}})
	r := packHostile(t, "images:\n  - name: app\n    image: "+host+"/app\n    semver: '>=1.0.0'\n", "--plain-http", host)
	r.refused(t, 30*time.Second, 128<<20, "image app ("+host+"/app)", "tag listing exceeded 1000 pages", "listing limit", "Link header")
}

// A registry serving an image whose layer claims a size past the bundle's blob limit and
// whose download never ends: pack refuses the layer from its descriptor without a request
// for it. A layer within the limit that trickles forever is stopped by the source's timeout.
func TestPackRefusesEndlessBlob(t *testing.T) {
	endless := digest.FromString("endless").String()
	var (
		mu       sync.Mutex
		requests int
	)
	trickle := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 1024)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}
	manifest, config := imageManifest(endless, 1<<50)
	reg := &hostileRegistry{manifest: manifest, blobs: map[string][]byte{digestOf(config): config}, slow: map[string]http.HandlerFunc{endless: trickle}}
	host := loopback(t, reg)
	r := packHostile(t, "images:\n  - name: app\n    image: "+host+"/app\n    tag: 1.0.0\n", "--plain-http", host)
	r.refused(t, 10*time.Second, 128<<20, "image app ("+host+"/app)", "blob "+endless+" of 1125899906842624 bytes is over the 68719476736 byte blob limit", "MaxBlobSize")
	if requests != 0 {
		t.Fatalf("pack requested the oversized blob %d times", requests)
	}

	// Within the limits, the trickle is cut off by the source's timeout.
	reg.manifest, _ = imageManifest(endless, 1<<30)
	r = packHostile(t, "images:\n  - name: app\n    image: "+host+"/app\n    tag: 1.0.0\n    timeout: 2s\n", "--plain-http", host)
	r.refused(t, 15*time.Second, 128<<20, "image app: not fetched within its timeout of 2s", "raise the source's timeout")
	if requests == 0 {
		t.Fatal("the trickling blob was never requested")
	}
}

// Tokens in source URLs (user information, query values) appear nowhere: not in the bundle
// pack writes, not in its log, not in its errors.
func TestPackKeepsURLTokensOut(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	const secret = "hunter2secret"
	charts := testenv.NewHelmRepo(t)
	if _, err := charts.AddChart("app", "1.0.0", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}, nil); err != nil {
		t.Fatal(err)
	}
	git := testenv.NewGitServer(t)
	if _, err := git.CreateRepo(context.Background(), "platform", map[string]string{"apps/cm.yaml": "kind: ConfigMap\n"}); err != nil {
		t.Fatal(err)
	}
	gitURL := strings.Replace(git.RepoURL("platform"), "http://", "http://ferry:"+secret+"@", 1)
	dir := t.TempDir()
	specPath := filepath.Join(dir, "ferry.yaml")
	body := "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ncharts:\n  - name: app\n    repository: " + charts.URL + "/?token=" + secret + "\n    version: 1.0.0\n" +
		"git:\n  - name: platform\n    url: " + gitURL + "\n    ref: {branch: main}\n"
	if err := os.WriteFile(specPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bundle")
	cmd := packCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetArgs([]string{"-f", specPath, "--out", out, "--verbose", "--output", "json"})
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.Flags().Bool("verbose", true, "")
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("mirror pack: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), secret) {
		t.Fatalf("pack's output shows the token:\n%s\n%s", stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "chart resolved") {
		t.Fatalf("the log is not at info level, so it proves nothing:\n%s", stderr.String())
	}
	files := 0
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the token", p)
		}
		return nil
	})
	if err != nil || files < 10 {
		t.Fatalf("walk %s: %v (%d files)", out, err, files)
	}

	// Errors too: a source that fails names its URL without the token.
	for _, src := range []string{
		"git:\n  - name: gone\n    url: http://ferry:" + secret + "@127.0.0.1:1/x.git?token=" + secret + "\n    ref: {branch: main}\n",
		"charts:\n  - name: gone\n    repository: http://ferry:" + secret + "@127.0.0.1:1/charts?token=" + secret + "\n    version: 1.0.0\n",
	} {
		r := packHostile(t, src)
		r.refused(t, 20*time.Second, 64<<20, "gone (http://127.0.0.1:1/", "connection refused")
		if strings.Contains(r.err.Error()+r.out, secret) {
			t.Fatalf("the error shows the token: %v\n%s", r.err, r.out)
		}
	}
}

// An OCI chart whose manifest lists another layer (of any size, never ending) or names a
// subject: pack carries only a chart's config, archive and provenance, so it refuses both
// without requesting what they name.
func TestPackRefusesChartWithForeignContent(t *testing.T) {
	charts := testenv.NewHelmRepo(t)
	tgzPath, err := charts.AddChart("app", "1.0.0", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tgz, err := os.ReadFile(tgzPath)
	if err != nil {
		t.Fatal(err)
	}
	config := []byte(`{"name":"app","version":"1.0.0","apiVersion":"v2"}`)
	endless := digest.FromString("endless").String()
	var (
		mu       sync.Mutex
		requests int
	)
	reg := &hostileRegistry{repo: "charts/app", blobs: map[string][]byte{digestOf(config): config, digestOf(tgz): tgz},
		slow: map[string]http.HandlerFunc{endless: func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests++
			mu.Unlock()
			for r.Context().Err() == nil {
				if _, err := w.Write(make([]byte, 1024)); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}}}
	host := loopback(t, reg)
	head := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":%q,"size":%d}`,
		digestOf(config), len(config), digestOf(tgz), len(tgz))
	chart := "charts:\n  - name: app\n    repository: oci://" + host + "/charts\n    version: 1.0.0\n"

	reg.manifest = fmt.Appendf(nil, `%s,{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, head, endless, 1<<30)
	r := packHostile(t, chart, "--plain-http", host)
	r.refused(t, 10*time.Second, 128<<20, "chart app (oci://"+host+"/charts/app)", "layer "+endless, "is not a chart's", "carries only its own layers")

	reg.manifest = fmt.Appendf(nil, `%s],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}}`, head, endless, 1<<20)
	r = packHostile(t, chart, "--plain-http", host)
	r.refused(t, 10*time.Second, 128<<20, "chart app (oci://"+host+"/charts/app)", "names a subject "+endless)
	if requests != 0 {
		t.Fatalf("pack requested what the chart manifest named %d times", requests)
	}

	// The same chart without them is carried.
	reg.manifest = fmt.Appendf(nil, `%s]}`, head)
	if r := packHostile(t, chart, "--plain-http", host); r.err != nil {
		t.Fatalf("pack of a plain OCI chart: %v\n%s", r.err, r.out)
	}
}

// A Helm repository whose chart archive announces a size past the chart limit, and one whose
// archive never ends: pack refuses both at bundle.MaxChartSize, the limit sync applies.
func TestPackRefusesHugeChartArchive(t *testing.T) {
	charts := testenv.NewHelmRepo(t)
	if _, err := charts.AddChart("app", "1.0.0", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"}, nil); err != nil {
		t.Fatal(err)
	}
	index, err := os.ReadFile(filepath.Join(charts.Dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var announce atomic.Bool
	announce.Store(true)
	var host string
	host = loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/index.yaml":
			w.Write(bytes.ReplaceAll(index, []byte(charts.URL), []byte("http://"+host)))
		case "/app-1.0.0.tgz":
			if announce.Load() {
				w.Header().Set("Content-Length", "1099511627776")
				w.WriteHeader(http.StatusOK)
				return
			}
			chunk := make([]byte, 64<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	chart := "charts:\n  - name: app\n    repository: http://" + host + "\n    version: 1.0.0\n"
	r := packHostile(t, chart)
	r.refused(t, 10*time.Second, 64<<20, "chart app (http://"+host+"/app)", "is 1099511627776 bytes, over the 67108864 byte limit", "MaxChartSize")
	announce.Store(false)
	r = packHostile(t, chart)
	r.refused(t, 30*time.Second, 384<<20, "chart app (http://"+host+"/app)", "is over the 67108864 byte limit", "MaxChartSize")
}

// A registry whose referrers listing's Link header points back at the same page: pack stops
// at the page limit and refuses the image.
func TestPackRefusesEndlessReferrers(t *testing.T) {
	layer := []byte("layer")
	manifest, config := imageManifest(digestOf(layer), int64(len(layer)))
	reg := &hostileRegistry{manifest: manifest, blobs: map[string][]byte{digestOf(config): config, digestOf(layer): layer},
		referrers: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Header().Set("Link", "<"+r.URL.Path+">; rel=\"next\"")
			fmt.Fprint(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
		}}
	host := loopback(t, reg)
	r := packHostile(t, "images:\n  - name: app\n    image: "+host+"/app\n    tag: 1.0.0\n", "--plain-http", host)
	r.refused(t, 30*time.Second, 128<<20, "image app ("+host+"/app)", "list referrers of "+digestOf(manifest), "exceeded 1000 pages", "listing limit")
}

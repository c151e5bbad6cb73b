package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
)

// mirrorLog is a mirror on loopback in front of a real server (a registry, git http-backend, a
// folder of chart files): it records every request it passes on, so a test can tell what was
// dialled at the mirror and that the original's credentials never reached it.
type mirrorLog struct {
	// URL is http://Host.
	URL, Host string
	mu        sync.Mutex
	reqs      []mirrorRequest
}

type mirrorRequest struct {
	method, path, query, auth string
	status                    int
}

// newMirrorLog starts a mirror that hands requests to next, asking for basic credentials
// user:pass first unless user is "".
func newMirrorLog(t *testing.T, next http.Handler, user, pass string) *mirrorLog {
	t.Helper()
	m := &mirrorLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			m.mu.Lock()
			m.reqs = append(m.reqs, mirrorRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), rec.status})
			m.mu.Unlock()
		}()
		if u, p, ok := r.BasicAuth(); user != "" && (!ok || u != user || p != pass) {
			rec.Header().Set("WWW-Authenticate", `Basic realm="mirror"`)
			http.Error(rec, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(rec, r)
	}))
	t.Cleanup(srv.Close)
	m.URL, m.Host = srv.URL, strings.TrimPrefix(srv.URL, "http://")
	return m
}

// newMirrorProxy starts a mirrorLog that passes requests to the server at target.
func newMirrorProxy(t *testing.T, target, user, pass string) *mirrorLog {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return newMirrorLog(t, httputil.NewSingleHostReverseProxy(u), user, pass)
}

// take returns the requests recorded since the last call and forgets them.
func (m *mirrorLog) take() []mirrorRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.reqs
	m.reqs = nil
	return r
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// noMirrorIn fails if an item's source, or any blob of the layout, names the mirror.
func noMirrorIn(t *testing.T, l *bundle.Layout, item bundle.Item, mirrors ...string) {
	t.Helper()
	for _, m := range mirrors {
		if strings.Contains(item.Source, m) {
			t.Errorf("item source %q names the mirror %s", item.Source, m)
		}
		for name, b := range gitBlobs(t, l) {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("blob %s names the mirror %s", name, m)
			}
		}
	}
}

// Rewrite is written in spec; these are the cases the fetchers rely on.
func TestRewrite(t *testing.T) {
	ups := []spec.Upstream{
		{Prefix: "quay.io", Mirror: "harbor.example/quay"},
		{Prefix: "quay.io/jetstack", Mirror: "http://10.0.0.5:5000/jetstack/"},
		{Prefix: "oci://ghcr.io/stefanprodan/charts", Mirror: "oci://harbor.example/ghcr-charts"},
		{Prefix: "registry.example", Mirror: "https://harbor.example/proxy"},
		{Prefix: "https://charts.jetstack.io/", Mirror: "https://artifactory.example/artifactory/api/helm/jetstack"},
		{Prefix: "https://charts.bitnami.com", Mirror: "nexus.example/repository/bitnami"},
		{Prefix: "https://github.com/fluxcd", Mirror: "https://artifactory.example/artifactory/api/vcs/github/fluxcd"},
		{Prefix: "https://github.com/fluxcd/flux2-kustomize-helm-example", Mirror: "http://git.example/example"},
		{Prefix: "https://same.example", Mirror: "https://first.example"},
		{Prefix: "https://same.example/", Mirror: "https://second.example"},
	}
	tests := []struct {
		name, in, want string
		plain          bool
	}{
		{"image under a registry host", "quay.io/prometheus/node-exporter", "harbor.example/quay/prometheus/node-exporter", false},
		{"longest prefix wins, http mirror is plain HTTP", "quay.io/jetstack/cert-manager-controller", "10.0.0.5:5000/jetstack/cert-manager-controller", true},
		{"the prefix itself", "quay.io/jetstack", "10.0.0.5:5000/jetstack", true},
		{"a tag after the prefix", "quay.io/jetstack:v1", "10.0.0.5:5000/jetstack:v1", true},
		{"a digest after the prefix", "quay.io/jetstack@sha256:abc", "10.0.0.5:5000/jetstack@sha256:abc", true},
		{"not on a path boundary", "quay.io/jetstack-extras/x", "harbor.example/quay/jetstack-extras/x", false},
		{"host matched without case", "QUAY.IO/jetstack/x", "10.0.0.5:5000/jetstack/x", true},
		{"bare prefix matches an oci:// URL, which keeps its form", "oci://quay.io/jetstack/charts/cert-manager", "oci://10.0.0.5:5000/jetstack/charts/cert-manager", true},
		{"oci:// prefix matches a bare reference", "ghcr.io/stefanprodan/charts/podinfo", "harbor.example/ghcr-charts/podinfo", false},
		{"oci:// prefix matches an oci:// URL", "oci://ghcr.io/stefanprodan/charts/podinfo", "oci://harbor.example/ghcr-charts/podinfo", false},
		{"https:// registry mirror is not plain HTTP", "registry.example/team/app", "harbor.example/proxy/team/app", false},
		{"outside every prefix", "ghcr.io/stefanprodan/podinfo", "ghcr.io/stefanprodan/podinfo", false},
		{"a host that only starts like the prefix", "quay.io.evil.example/x", "quay.io.evil.example/x", false},
		{"registry prefix does not match a URL", "https://quay.io/x", "https://quay.io/x", false},
		{"URL prefix", "https://charts.jetstack.io/index.yaml", "https://artifactory.example/artifactory/api/helm/jetstack/index.yaml", false},
		{"URL prefix itself", "https://charts.jetstack.io", "https://artifactory.example/artifactory/api/helm/jetstack", false},
		{"query kept", "https://charts.jetstack.io/charts/cert-manager-v1.16.0.tgz?token=x", "https://artifactory.example/artifactory/api/helm/jetstack/charts/cert-manager-v1.16.0.tgz?token=x", false},
		{"other scheme", "http://charts.jetstack.io/index.yaml", "http://charts.jetstack.io/index.yaml", false},
		{"URL prefix does not match an image", "charts.jetstack.io/x", "charts.jetstack.io/x", false},
		{"host that only starts like the prefix", "https://charts.jetstack.io.evil.example/index.yaml", "https://charts.jetstack.io.evil.example/index.yaml", false},
		{"bare mirror of a URL keeps the scheme", "https://charts.bitnami.com/bitnami/index.yaml", "https://nexus.example/repository/bitnami/bitnami/index.yaml", false},
		{"Git organisation", "https://github.com/fluxcd/flux2.git", "https://artifactory.example/artifactory/api/vcs/github/fluxcd/flux2.git", false},
		{"Git repository, longest prefix", "https://github.com/fluxcd/flux2-kustomize-helm-example", "http://git.example/example", false},
		{"Git repository with .git is not on the boundary of a prefix without", "https://github.com/fluxcd/flux2-kustomize-helm-example.git",
			"https://artifactory.example/artifactory/api/vcs/github/fluxcd/flux2-kustomize-helm-example.git", false},
		{"scheme and host matched without case", "HTTPS://GitHub.com/fluxcd/flux2", "https://artifactory.example/artifactory/api/vcs/github/fluxcd/flux2", false},
		{"prefixes of equal length: the first", "https://same.example/x", "https://first.example/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, plain := spec.Rewrite(ups, tt.in)
			if got != tt.want || plain != tt.plain {
				t.Fatalf("Rewrite(%q) = %q, %v; want %q, %v", tt.in, got, plain, tt.want, tt.plain)
			}
		})
	}
	if got, plain := spec.Rewrite(nil, "quay.io/x"); got != "quay.io/x" || plain {
		t.Fatalf("Rewrite without upstreams = %q, %v", got, plain)
	}
}

// An image is fetched from a mirror on loopback and recorded under its original name. The
// index pushed to the mirror is made by the test, so an image fetched from ghcr.io itself
// would have another digest; a .invalid original cannot be dialled at all.
func TestImageThroughUpstreamMirror(t *testing.T) {
	ctx := context.Background()
	reg := testenv.NewRegistry(t)
	keys := cosignKeys(t)
	pushed := map[string]string{}
	for _, tag := range []string{"6.9.1", "6.9.2", "7.0.0-rc.1"} {
		d, err := testenv.PushIndex(ctx, reg.Host+"/mirror/stefanprodan/podinfo:"+tag, "linux/amd64", "linux/arm64")
		if err != nil {
			t.Fatal(err)
		}
		pushed[tag] = d
	}
	signed := reg.Host + "/mirror/stefanprodan/podinfo@" + pushed["6.9.2"]
	sign(t, keys, signed, false)
	sign(t, keys, signed, true)
	if _, err := testenv.PushIndex(ctx, reg.Host+"/invalid/team/app:1.0.0", "linux/amd64"); err != nil {
		t.Fatal(err)
	}
	mirror := newMirrorProxy(t, reg.URL, "", "")

	const podinfo = "ghcr.io/stefanprodan/podinfo"
	tests := []struct {
		name      string
		ups       []spec.Upstream
		plainHTTP []string
		src       spec.Image
		source    string // the item's Source
		digest    string
		referrers int
		repoPath  string // every request but /v2/ is under /v2/<repoPath>/
	}{
		{name: "registry and path prefix, http:// mirror",
			ups: []spec.Upstream{{Prefix: "ghcr.io/stefanprodan", Mirror: "http://" + mirror.Host + "/mirror/stefanprodan"}},
			src: spec.Image{Name: "podinfo", Image: podinfo, Tag: "6.9.2"}, source: podinfo + ":6.9.2", digest: pushed["6.9.2"], referrers: 2,
			repoPath: "mirror/stefanprodan/podinfo"},
		{name: "oci:// prefix, bare mirror listed as plain HTTP",
			ups:       []spec.Upstream{{Prefix: "oci://ghcr.io/stefanprodan", Mirror: mirror.Host + "/mirror/stefanprodan"}},
			plainHTTP: []string{mirror.Host},
			src:       spec.Image{Name: "podinfo", Image: podinfo, Tag: "6.9.2", Platforms: []string{"linux/arm64"}}, source: podinfo + ":6.9.2", digest: pushed["6.9.2"], referrers: 2,
			repoPath: "mirror/stefanprodan/podinfo"},
		{name: "longest prefix wins",
			ups: []spec.Upstream{
				{Prefix: "ghcr.io", Mirror: "http://127.0.0.1:1/nowhere"},
				{Prefix: "ghcr.io/stefanprodan/podinfo", Mirror: "http://" + mirror.Host + "/mirror/stefanprodan/podinfo"},
			},
			src: spec.Image{Name: "podinfo", Image: podinfo, Digest: pushed["6.9.1"]}, source: podinfo + "@" + pushed["6.9.1"], digest: pushed["6.9.1"],
			repoPath: "mirror/stefanprodan/podinfo"},
		{name: "semver lists the mirror's tags",
			ups: []spec.Upstream{{Prefix: "ghcr.io/stefanprodan", Mirror: "http://" + mirror.Host + "/mirror/stefanprodan"}},
			src: spec.Image{Name: "podinfo", Image: podinfo, SemVer: ">=6.0.0 <7.0.0-0", Signatures: new(bool)}, source: podinfo + ":6.9.2", digest: pushed["6.9.2"],
			repoPath: "mirror/stefanprodan/podinfo"},
		{name: "an original that cannot be dialled",
			ups: []spec.Upstream{{Prefix: "registry.example.invalid", Mirror: "http://" + mirror.Host + "/invalid"}},
			src: spec.Image{Name: "app", Image: "registry.example.invalid/team/app", Tag: "1.0.0"}, source: "registry.example.invalid/team/app:1.0.0",
			repoPath: "invalid/team/app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mirror.take()
			l := chartLayout(t)
			var logs bytes.Buffer
			item, err := fetch.Image(ctx, l, tt.src, &fetch.Options{Upstreams: tt.ups, PlainHTTP: tt.plainHTTP, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if item.Source != tt.source {
				t.Errorf("item source %q, want the original %q", item.Source, tt.source)
			}
			if tt.digest != "" && (string(item.Descriptor.Digest) != tt.digest || item.Revision != tt.digest) {
				t.Errorf("carried %s, want the mirror's %s", item.Descriptor.Digest, tt.digest)
			}
			if len(item.Referrers) != tt.referrers {
				t.Errorf("carried %d referrers, want %d from the mirror", len(item.Referrers), tt.referrers)
			}
			// The signatures, carried byte for byte, name the registry they were made at
			// (reg.Host): only the mirror's own address must be nowhere.
			noMirrorIn(t, l, item, mirror.Host)
			if strings.Contains(item.Source, "127.0.0.1") {
				t.Errorf("item source %q names a loopback address", item.Source)
			}
			reqs := mirror.take()
			if len(reqs) == 0 {
				t.Fatal("nothing was asked of the mirror")
			}
			for _, r := range reqs {
				if r.path != "/v2/" && !strings.HasPrefix(r.path, "/v2/"+tt.repoPath+"/") {
					t.Errorf("the mirror was asked for %s %s, outside %s", r.method, r.path, tt.repoPath)
				}
			}
			if !strings.Contains(logs.String(), "mirror=") || !strings.Contains(logs.String(), "source="+tt.source) {
				t.Errorf("log %q does not name the source and the mirror", logs.String())
			}
			now := time.Now()
			if _, err := bundle.Write(ctx, l, &bundle.Bundle{Sequence: 1, Created: now, Expires: now.Add(time.Hour), Items: []bundle.Item{item}}, nil); err != nil {
				t.Fatalf("the image fetched through the mirror is not a complete bundle item: %v", err)
			}
		})
	}

	t.Run("mirror without the image", func(t *testing.T) {
		o := &fetch.Options{Upstreams: []spec.Upstream{{Prefix: "ghcr.io/stefanprodan", Mirror: "http://" + mirror.Host + "/elsewhere"}}}
		_, err := fetch.Image(ctx, chartLayout(t), spec.Image{Name: "podinfo", Image: podinfo, Tag: "6.9.2"}, o)
		want := "image podinfo (" + podinfo + " via mirror " + mirror.Host + "/elsewhere/podinfo): resolve 6.9.2"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error %v, want one starting %q", err, want)
		}
	})
}

// An oci:// chart is fetched from a mirror on loopback and recorded under its original URL.
func TestChartFromOCIThroughUpstreamMirror(t *testing.T) {
	ctx := context.Background()
	reg := testenv.NewRegistry(t)
	helm := newChartHelm(t)
	dir := t.TempDir()
	pushed := map[string]string{}
	for _, v := range []string{"6.9.1", "6.9.2"} {
		pushed[v] = string(helm.push(t, chartPackage(t, dir, "podinfo", v, nil), reg.Host, "mirror/stefanprodan/charts"))
	}
	mirror := newMirrorProxy(t, reg.URL, "", "")
	const repository, source = "oci://ghcr.io/stefanprodan/charts", "oci://ghcr.io/stefanprodan/charts/podinfo"
	tests := []struct {
		name, version, want string
		ups                 []spec.Upstream
		plainHTTP           []string
	}{
		{name: "oci:// prefix, http:// mirror", version: "6.9.2", want: "6.9.2",
			ups: []spec.Upstream{{Prefix: "oci://ghcr.io/stefanprodan/charts", Mirror: "http://" + mirror.Host + "/mirror/stefanprodan/charts"}}},
		{name: "registry prefix covers charts too", version: "6.9.1", want: "6.9.1",
			ups:       []spec.Upstream{{Prefix: "ghcr.io/stefanprodan", Mirror: mirror.Host + "/mirror/stefanprodan"}},
			plainHTTP: []string{mirror.Host}},
		{name: "range lists the mirror's tags", version: "~6.9", want: "6.9.2",
			ups: []spec.Upstream{{Prefix: "ghcr.io", Mirror: "http://" + mirror.Host + "/mirror"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mirror.take()
			l := chartLayout(t)
			var logs bytes.Buffer
			src := spec.Chart{Name: "podinfo", Repository: repository, Version: tt.version}
			item, err := fetch.Chart(ctx, l, src, &fetch.Options{Upstreams: tt.ups, PlainHTTP: tt.plainHTTP, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if item.Source != source || item.Revision != tt.want || string(item.Descriptor.Digest) != pushed[tt.want] {
				t.Fatalf("item source %q revision %s digest %s; want %s %s %s", item.Source, item.Revision, item.Descriptor.Digest, source, tt.want, pushed[tt.want])
			}
			chartCheckLayout(t, l, item)
			noMirrorIn(t, l, item, mirror.Host, reg.Host, "127.0.0.1")
			reqs := mirror.take()
			if len(reqs) == 0 {
				t.Fatal("nothing was asked of the mirror")
			}
			for _, r := range reqs {
				if r.path != "/v2/" && !strings.HasPrefix(r.path, "/v2/mirror/stefanprodan/charts/podinfo/") {
					t.Errorf("the mirror was asked for %s %s", r.method, r.path)
				}
			}
			if !strings.Contains(logs.String(), "mirror=oci://"+mirror.Host+"/mirror/stefanprodan/charts/podinfo") {
				t.Errorf("log %q does not name the mirror", logs.String())
			}
		})
	}
	t.Run("unreachable mirror", func(t *testing.T) {
		src := spec.Chart{Name: "podinfo", Repository: repository, Version: "6.9.2"}
		o := &fetch.Options{Upstreams: []spec.Upstream{{Prefix: "ghcr.io/stefanprodan", Mirror: "http://127.0.0.1:1/m"}}}
		_, err := fetch.Chart(ctx, chartLayout(t), src, o)
		want := "chart podinfo (" + source + "): via mirror oci://127.0.0.1:1/m/charts/podinfo: "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("error %v, want one starting %q saying connection refused", err, want)
		}
	})
}

// An HTTP chart repository is fetched through a mirror, whatever the URLs its index.yaml
// gives: absolute at the original host, relative, rewritten to the mirror's own host, or on a
// download host of its own. The original hosts are .invalid: they cannot be dialled.
func TestChartFromHTTPThroughUpstreamMirror(t *testing.T) {
	ctx := context.Background()
	pkg := t.TempDir()
	archives := map[string][]byte{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		b, err := os.ReadFile(chartPackage(t, pkg, "podinfo", v, nil))
		if err != nil {
			t.Fatal(err)
		}
		archives[v] = b
	}
	sum := sha256.Sum256(archives["1.1.0"])
	prov := []byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nfiles:\n  podinfo-1.1.0.tgz: sha256:" + hex.EncodeToString(sum[:]) + "\n")

	// The mirror serves root: one folder per repository, index.yaml written with the base URL
	// each case gives, the archives beside it or in a download folder of their own.
	root := t.TempDir()
	mirror := newMirrorLog(t, http.FileServer(http.Dir(root)), "", "")
	repoFolder := func(name, base string, withArchives bool) {
		t.Helper()
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for v, b := range archives {
			if err := os.WriteFile(filepath.Join(d, "podinfo-"+v+".tgz"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, "podinfo-1.1.0.tgz.prov"), prov, 0o644); err != nil {
			t.Fatal(err)
		}
		idx, err := repo.IndexDirectory(d, base)
		if err != nil {
			t.Fatal(err)
		}
		if !withArchives {
			for _, f := range []string{"podinfo-1.0.0.tgz", "podinfo-1.1.0.tgz", "podinfo-1.1.0.tgz.prov"} {
				if err := os.Remove(filepath.Join(d, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := idx.WriteFile(filepath.Join(d, "index.yaml"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const original = "https://charts.example.invalid/podinfo"
	repoFolder("absolute", original, true)
	repoFolder("relative", "", true)
	repoFolder("rewritten", mirror.URL+"/rewritten", true)
	repoFolder("split", "https://downloads.example.invalid/releases", false)
	repoFolder("split-downloads", "", true)
	repoFolder("elsewhere", "https://evil.example.invalid/podinfo", true)
	to := func(folder string) spec.Upstream {
		return spec.Upstream{Prefix: original, Mirror: mirror.URL + "/" + folder}
	}
	downloads := spec.Upstream{Prefix: "https://downloads.example.invalid/releases", Mirror: mirror.URL + "/split-downloads"}

	tests := []struct {
		name       string
		repository string
		ups        []spec.Upstream
		allowed    []string
		version    string
		want       []string // paths asked of the mirror, in order
		err        string   // the error, after "chart podinfo (<source>): "
	}{
		{name: "absolute URLs at the original host", ups: []spec.Upstream{to("absolute")}, version: "^1",
			want: []string{"/absolute/index.yaml", "/absolute/podinfo-1.1.0.tgz", "/absolute/podinfo-1.1.0.tgz.prov"}},
		{name: "relative URLs", ups: []spec.Upstream{to("relative")}, version: "1.0.0",
			want: []string{"/relative/index.yaml", "/relative/podinfo-1.0.0.tgz", "/relative/podinfo-1.0.0.tgz.prov"}},
		{name: "URLs the mirror rewrote to its own host", ups: []spec.Upstream{to("rewritten")}, version: "1.1.0",
			want: []string{"/rewritten/index.yaml", "/rewritten/podinfo-1.1.0.tgz", "/rewritten/podinfo-1.1.0.tgz.prov"}},
		{name: "an allowed download host, through its own mirror", ups: []spec.Upstream{to("split"), downloads}, allowed: []string{"downloads.example.invalid"}, version: "1.1.0",
			want: []string{"/split/index.yaml", "/split-downloads/podinfo-1.1.0.tgz", "/split-downloads/podinfo-1.1.0.tgz.prov"}},
		{name: "the original's credentials stay off the mirror", repository: "https://ferry:hunter2@charts.example.invalid/podinfo", ups: []spec.Upstream{to("absolute")}, version: "1.0.0",
			want: []string{"/absolute/index.yaml", "/absolute/podinfo-1.0.0.tgz", "/absolute/podinfo-1.0.0.tgz.prov"}},
		{name: "the original's query token stays off the mirror", repository: original + "?token=hunter2", ups: []spec.Upstream{to("relative")}, version: "1.0.0",
			want: []string{"/relative/index.yaml", "/relative/podinfo-1.0.0.tgz", "/relative/podinfo-1.0.0.tgz.prov"}},
		{name: "allowedHosts is checked against the original URL", ups: []spec.Upstream{to("split"), downloads}, version: "1.1.0",
			want: []string{"/split/index.yaml"},
			err:  "version 1.1.0: index.yaml sends the download to https://downloads.example.invalid/releases/podinfo-1.1.0.tgz, which is not the repository's host charts.example.invalid; refused"},
		{name: "a host neither the repository's nor the mirror's", ups: []spec.Upstream{to("elsewhere")}, version: "1.1.0",
			want: []string{"/elsewhere/index.yaml"},
			err:  "version 1.1.0: index.yaml sends the download to https://evil.example.invalid/podinfo/podinfo-1.1.0.tgz, which is not the repository's host charts.example.invalid; refused"},
		{name: "mirror without the repository", ups: []spec.Upstream{to("missing")}, version: "1.1.0",
			want: []string{"/missing/index.yaml"},
			err:  "download index.yaml via mirror " + mirror.URL + "/missing/index.yaml: " + mirror.URL + "/missing/index.yaml: 404 Not Found"},
		{name: "archive missing on the mirror", ups: []spec.Upstream{to("split"), {Prefix: downloads.Prefix, Mirror: mirror.URL + "/empty"}}, allowed: []string{"downloads.example.invalid"}, version: "1.1.0",
			want: []string{"/split/index.yaml", "/empty/podinfo-1.1.0.tgz"},
			err: "version 1.1.0: download https://downloads.example.invalid/releases/podinfo-1.1.0.tgz via mirror " + mirror.URL + "/empty/podinfo-1.1.0.tgz: " +
				mirror.URL + "/empty/podinfo-1.1.0.tgz: 404 Not Found"},
		{name: "a download host no upstream covers is dialled as it is", ups: []spec.Upstream{to("split")}, allowed: []string{"downloads.example.invalid"}, version: "1.1.0",
			want: []string{"/split/index.yaml"},
			err:  "version 1.1.0: download https://downloads.example.invalid/releases/podinfo-1.1.0.tgz: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mirror.take()
			repository := tt.repository
			if repository == "" {
				repository = original
			}
			src := spec.Chart{Name: "podinfo", Repository: repository, Version: tt.version, AllowedHosts: tt.allowed}
			l := chartLayout(t)
			var logs bytes.Buffer
			item, err := fetch.Chart(ctx, l, src, &fetch.Options{Upstreams: tt.ups, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			reqs := mirror.take()
			var paths []string
			for _, r := range reqs {
				paths = append(paths, r.path)
				if r.auth != "" || r.query != "" {
					t.Errorf("the mirror was sent credentials %q or a query %q for %s", r.auth, r.query, r.path)
				}
			}
			if strings.Contains(fmt.Sprint(err), "hunter2") || strings.Contains(logs.String(), "hunter2") {
				t.Errorf("a password shows: %v %s", err, logs.String())
			}
			if tt.err != "" {
				t.Log(err)
				want := "chart podinfo (" + original + "/podinfo): " + tt.err
				if err == nil || !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error %v, want one starting %q", err, want)
				}
				if tt.want != nil && strings.Join(paths, " ") != strings.Join(tt.want, " ") {
					t.Errorf("the mirror was asked for %v, want %v", paths, tt.want)
				}
				chartEmpty(t, l)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(paths, " ") != strings.Join(tt.want, " ") {
				t.Errorf("the mirror was asked for %v, want %v", paths, tt.want)
			}
			for _, r := range reqs {
				if r.status != http.StatusOK && !strings.HasSuffix(r.path, ".prov") {
					t.Errorf("the mirror answered %d for %s", r.status, r.path)
				}
			}
			if item.Source != original+"/podinfo" {
				t.Errorf("item source %q, want the original %s/podinfo", item.Source, original)
			}
			m := chartCheckLayout(t, l, item)
			layers := 1
			if item.Revision == "1.1.0" {
				layers = 2 // the provenance file came through the mirror too
			}
			if len(m.Layers) != layers {
				t.Errorf("carried %d layers, want %d", len(m.Layers), layers)
			}
			for _, d := range m.Layers {
				if d.MediaType == bundle.ChartLayerMediaType && !bytes.Equal(chartBlob(t, l, d), archives[item.Revision]) {
					t.Errorf("carried archive differs from the mirror's")
				}
			}
			noMirrorIn(t, l, item, mirror.Host, "127.0.0.1")
			if !strings.Contains(logs.String(), "mirror="+mirror.URL) {
				t.Errorf("log %q does not name the mirror", logs.String())
			}
		})
	}
}

// A Git repository is fetched through an http:// mirror and recorded under its original URL,
// with the credentials ~/.git-credentials holds for the mirror and never the original's.
func TestGitThroughUpstreamMirror(t *testing.T) {
	f := newGitFixture(t)
	open := newMirrorProxy(t, f.srv.URL, "", "")
	const user, token = "mirror-user", "m1rr0r-t0ken"
	locked := newMirrorProxy(t, f.srv.URL, user, token)
	const original = "https://github.com/stefanprodan/platform.git"
	credLine := func(scheme, host, u, p string) string {
		return (&url.URL{Scheme: scheme, User: url.UserPassword(u, p), Host: host}).String() + "\n"
	}
	tests := []struct {
		name   string
		url    string
		ups    []spec.Upstream
		mirror *mirrorLog
		creds  string // ~/.git-credentials
		auth   bool   // the mirror is sent credentials
		branch string // main when ""
		via    string // the mirror an error names
		err    []string
	}{
		{name: "organisation prefix, http:// mirror", url: original,
			ups: []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: open.URL}}, mirror: open},
		{name: "repository prefix without .git", url: "https://github.com/stefanprodan/platform",
			ups: []spec.Upstream{{Prefix: "https://github.com/stefanprodan/platform", Mirror: open.URL + "/platform.git"}}, mirror: open},
		{name: "credentials for the mirror's host", url: original,
			ups:    []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: locked.URL}},
			mirror: locked, creds: credLine("https", "github.com", "gh", "github-token") + credLine("http", locked.Host, user, token), auth: true},
		{name: "the original's credentials stay off the mirror", url: "https://gh:github-token@github.com/stefanprodan/platform.git",
			ups:    []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: open.URL}},
			mirror: open, creds: credLine("https", "github.com", "gh", "github-token")},
		{name: "the original's query token stays off the mirror", url: original + "?token=github-token",
			ups:    []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: open.URL}},
			mirror: open},
		{name: "mirror without the repository", url: original,
			ups: []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: open.URL + "/elsewhere"}}, mirror: open,
			via: open.URL + "/elsewhere/platform.git", err: []string{"list refs: repository not found"}},
		{name: "mirror that wants credentials", url: original,
			ups: []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: locked.URL}}, mirror: locked,
			creds: credLine("https", "github.com", user, token),
			via:   locked.URL + "/platform.git", err: []string{"list refs: authentication required"}},
		{name: "mirror without the branch", url: original, branch: "release",
			ups: []spec.Upstream{{Prefix: "https://github.com/stefanprodan", Mirror: open.URL}}, mirror: open,
			via: open.URL + "/platform.git", err: []string{`branch "release" not found; branches: dev, main`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			if tt.creds != "" {
				if err := os.WriteFile(filepath.Join(home, ".git-credentials"), []byte(tt.creds), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tt.mirror.take()
			l := chartLayout(t)
			var logs bytes.Buffer
			branch := tt.branch
			if branch == "" {
				branch = "main"
			}
			src := spec.Git{Name: "platform", URL: tt.url, Ref: spec.GitRef{Branch: branch}}
			item, err := fetch.Git(context.Background(), l, src, &fetch.Options{Upstreams: tt.ups, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			reqs := tt.mirror.take()
			if len(reqs) == 0 {
				t.Fatal("nothing was asked of the mirror")
			}
			sentAuth := false
			for _, r := range reqs {
				if strings.Contains(r.query, "github-token") {
					t.Errorf("the mirror was sent the original's query: %s?%s", r.path, r.query)
				}
				if r.auth != "" {
					sentAuth = true
					if u, p, _ := (&http.Request{Header: http.Header{"Authorization": {r.auth}}}).BasicAuth(); u != user || p != token {
						t.Errorf("the mirror was sent %s:%s, not its own credentials", u, p)
					}
				}
			}
			if sentAuth != tt.auth {
				t.Errorf("credentials sent to the mirror: %v, want %v", sentAuth, tt.auth)
			}
			for _, s := range []string{"github-token", token} {
				if strings.Contains(fmt.Sprint(err), s) || strings.Contains(logs.String(), s) {
					t.Errorf("a secret shows: %v %s", err, logs.String())
				}
			}
			shown := fetch.RedactURL(tt.url)
			if tt.err != nil {
				gitErr(t, err, "platform", shown+" via mirror "+tt.via, tt.err...)
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if item.Source != shown || item.Revision != f.second {
				t.Fatalf("item source %q revision %s, want the original %s at the mirror's %s", item.Source, item.Revision, shown, f.second)
			}
			g := gitRead(t, l, item)
			var cfg fetch.GitConfig
			if err := json.Unmarshal(g.config, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.URL != shown || g.flux.Annotations[ocispec.AnnotationSource] != shown {
				t.Errorf("config URL %q, Flux source %q: want the original %s", cfg.URL, g.flux.Annotations[ocispec.AnnotationSource], shown)
			}
			noMirrorIn(t, l, item, tt.mirror.Host, "127.0.0.1")
			if !strings.Contains(logs.String(), "mirror="+tt.mirror.URL) {
				t.Errorf("log %q does not name the mirror", logs.String())
			}
		})
	}
}

package fetch_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
)

// chartTime is the modification time of every file in the charts these tests package.
var chartTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// chartTemplates is the one template of the podinfo test charts.
var chartTemplates = map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: podinfo\n"}

// chartRepo starts an HTTP chart repository holding podinfo 1.0.0, 1.1.0 and 2.0.0.
func chartRepo(t *testing.T) *testenv.HelmRepo {
	t.Helper()
	repo := testenv.NewHelmRepo(t)
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
		if _, err := repo.AddChart("podinfo", v, chartTemplates, map[string]any{"replicas": 1}); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

// chartLayout returns an empty bundle layout.
func chartLayout(t *testing.T) *bundle.Layout {
	t.Helper()
	l, err := bundle.NewLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// chartBlob reads a verified blob from a layout.
func chartBlob(t *testing.T, l *bundle.Layout, d ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := l.Fetch(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read blob %s: %v", d.Digest, err)
	}
	return b
}

// chartManifest reads and parses an item's manifest from a layout.
func chartManifest(t *testing.T, l *bundle.Layout, d ocispec.Descriptor) ([]byte, ocispec.Manifest) {
	t.Helper()
	raw := chartBlob(t, l, d)
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest %s: %v", d.Digest, err)
	}
	return raw, m
}

// chartPackage packages a chart with Helm's SDK into dir: Chart.yaml lists deps, and charts/
// vendors the vendored ones. It returns the archive's path.
func chartPackage(t *testing.T, dir, name, version string, deps []*chart.Dependency, vendored ...string) string {
	t.Helper()
	c := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version, AppVersion: version,
			Description: "a chart made by Ferry's tests", Type: "application", Dependencies: deps},
		Values:  map[string]any{"replicas": 1},
		ModTime: chartTime,
	}
	for _, v := range vendored {
		c.AddDependency(&chart.Chart{
			Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: v, Version: "1.0.0", Type: "library"},
			ModTime:  chartTime,
		})
	}
	path, err := chartutil.Save(c, dir)
	if err != nil {
		t.Fatalf("package %s %s: %v", name, version, err)
	}
	return path
}

// chartHelm is the real helm CLI, its configuration and caches kept in a test folder.
type chartHelm struct {
	bin, home string
}

func newChartHelm(t *testing.T) *chartHelm {
	t.Helper()
	bin, err := testenv.ToolPath("helm")
	if err != nil {
		t.Fatal(err)
	}
	return &chartHelm{bin: bin, home: t.TempDir()}
}

// run runs helm in dir and returns its output.
func (h *chartHelm) run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+h.home,
		"HELM_CONFIG_HOME="+filepath.Join(h.home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(h.home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(h.home, "data"),
		"HELM_REGISTRY_CONFIG="+filepath.Join(h.home, "config", "registry", "config.json"),
		"DOCKER_CONFIG="+filepath.Join(h.home, "docker"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var chartPushDigest = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)

// push pushes a chart archive to oci://host/path with helm push and returns the manifest
// digest helm printed.
func (h *chartHelm) push(t *testing.T, tgz, host, path string, extra ...string) digest.Digest {
	t.Helper()
	out := h.run(t, filepath.Dir(tgz), append([]string{"push", tgz, "oci://" + host + "/" + path, "--plain-http"}, extra...)...)
	m := chartPushDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("helm push printed no digest:\n%s", out)
	}
	return digest.Digest(m[1])
}

// registryManifest fetches a tag's manifest bytes from a plain-HTTP registry.
func registryManifest(t *testing.T, host, repo, tag string) (ocispec.Descriptor, []byte) {
	t.Helper()
	r, err := remote.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	d, b, err := oras.FetchBytes(context.Background(), r, tag, oras.DefaultFetchBytesOptions)
	if err != nil {
		t.Fatalf("fetch %s/%s:%s: %v", host, repo, tag, err)
	}
	return d, b
}

// chartCheckLayout checks that a layout holds every blob of an item's manifest.
func chartCheckLayout(t *testing.T, l *bundle.Layout, item bundle.Item) ocispec.Manifest {
	t.Helper()
	_, m := chartManifest(t, l, item.Descriptor)
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		chartBlob(t, l, d)
	}
	return m
}

func TestChartFromHTTPRepository(t *testing.T) {
	ctx := context.Background()
	repo := chartRepo(t)
	tests := []struct {
		name, chartName, version, want string
	}{
		{name: "exact version", version: "1.0.0", want: "1.0.0"},
		{name: "range picks the highest match", version: ">=1.0.0 <2.0.0", want: "1.1.0"},
		{name: "caret range", version: "^1", want: "1.1.0"},
		{name: "item named apart from the chart", chartName: "podinfo", version: "2.0.0", want: "2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := spec.Chart{Name: "podinfo", Repository: repo.URL, Version: tt.version}
			if tt.chartName != "" {
				src.Name, src.Chart = "web", tt.chartName
			}
			var logs bytes.Buffer
			l := chartLayout(t)
			item, err := fetch.Chart(ctx, l, src, &fetch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if item.Name != src.Name || item.Kind != bundle.KindChart || item.Revision != tt.want || item.Source != repo.URL+"/podinfo" {
				t.Fatalf("item %+v: want name %s, kind chart, revision %s, source %s/podinfo", item, src.Name, tt.want, repo.URL)
			}
			if item.Descriptor.MediaType != ocispec.MediaTypeImageManifest {
				t.Fatalf("descriptor media type %q", item.Descriptor.MediaType)
			}
			m := chartCheckLayout(t, l, item)
			if m.Config.MediaType != registry.ConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != registry.ChartLayerMediaType {
				t.Fatalf("manifest is not laid out as helm push does: config %q, layers %+v", m.Config.MediaType, m.Layers)
			}
			upstream, err := os.ReadFile(filepath.Join(repo.Dir, "podinfo-"+tt.want+".tgz"))
			if err != nil {
				t.Fatal(err)
			}
			if got := chartBlob(t, l, m.Layers[0]); !bytes.Equal(got, upstream) {
				t.Fatalf("carried archive (%d bytes) differs from the repository's (%d bytes)", len(got), len(upstream))
			}
			var config chart.Metadata
			if err := json.Unmarshal(chartBlob(t, l, m.Config), &config); err != nil {
				t.Fatal(err)
			}
			if config.Name != "podinfo" || config.Version != tt.want || config.APIVersion != chart.APIVersionV2 {
				t.Fatalf("config holds %s %s (apiVersion %s), want podinfo %s", config.Name, config.Version, config.APIVersion, tt.want)
			}
			wantAnn := map[string]string{
				ocispec.AnnotationTitle:       "podinfo",
				ocispec.AnnotationVersion:     tt.want,
				ocispec.AnnotationDescription: "a chart made by Ferry's tests",
			}
			if !maps.Equal(m.Annotations, wantAnn) {
				t.Fatalf("annotations %v, want %v (and no creation time)", m.Annotations, wantAnn)
			}
			line := logs.String()
			for _, want := range []string{"name=" + src.Name, "version=" + tt.want, "digest=" + string(item.Descriptor.Digest), "source=" + item.Source} {
				if !strings.Contains(line, want) || strings.Count(line, "\n") != 1 {
					t.Fatalf("log %q: want one line with %s", line, want)
				}
			}
		})
	}
}

func TestChartIsDeterministic(t *testing.T) {
	ctx := context.Background()
	repo := chartRepo(t)
	src := spec.Chart{Name: "podinfo", Repository: repo.URL, Version: ">=1.0.0 <2.0.0"}
	l1, l2 := chartLayout(t), chartLayout(t)
	first, err := fetch.Chart(ctx, l1, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Later than the first fetch by more than a second: a creation time would differ.
	time.Sleep(1100 * time.Millisecond)
	second, err := fetch.Chart(ctx, l2, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := fetch.Chart(ctx, l1, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Descriptor.Digest != second.Descriptor.Digest || first.Descriptor.Digest != again.Descriptor.Digest || first.Descriptor.Size != second.Descriptor.Size {
		t.Fatalf("one chart version, three manifests: %s, %s, %s", first.Descriptor.Digest, second.Descriptor.Digest, again.Descriptor.Digest)
	}
	b1, _ := chartManifest(t, l1, first.Descriptor)
	b2, _ := chartManifest(t, l2, second.Descriptor)
	if !bytes.Equal(b1, b2) {
		t.Fatal("same digest, different manifest bytes")
	}
	t.Logf("podinfo 1.1.0 fetched three times: manifest %s each time", first.Descriptor.Digest)
}

// A chart Ferry publishes is the manifest `helm push` makes of the same archive and provenance
// file, less the creation time; helm pulls it from a registry; and it makes a valid bundle.
func TestChartMatchesHelmPushAndHelmPullsIt(t *testing.T) {
	ctx := context.Background()
	repo := chartRepo(t)
	reg := testenv.NewRegistry(t)
	helm := newChartHelm(t)

	archive := filepath.Join(repo.Dir, "podinfo-2.0.0.tgz")
	tgz, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	// A provenance file in Helm's format (unsigned: Ferry carries it and does not verify it).
	prov := fmt.Sprintf("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: podinfo\nversion: 2.0.0\n\n...\nfiles:\n  podinfo-2.0.0.tgz: %s\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQBQJ\n-----END PGP SIGNATURE-----\n", digest.FromBytes(tgz))
	if err := os.WriteFile(archive+".prov", []byte(prov), 0o644); err != nil {
		t.Fatal(err)
	}

	l := chartLayout(t)
	item, err := fetch.Chart(ctx, l, spec.Chart{Name: "podinfo", Repository: repo.URL, Version: "2.0.0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, m := chartManifest(t, l, item.Descriptor)
	if len(m.Layers) != 2 {
		t.Fatalf("%d layers, want the archive and its provenance file", len(m.Layers))
	}
	for _, d := range m.Layers {
		want := map[string][]byte{registry.ChartLayerMediaType: tgz, registry.ProvLayerMediaType: []byte(prov)}[d.MediaType]
		if got := chartBlob(t, l, d); want == nil || !bytes.Equal(got, want) {
			t.Fatalf("layer %s (%s) is not the repository's file", d.Digest, d.MediaType)
		}
	}

	// helm push of the same two files, then the registry's manifest less its creation time.
	pushDir := t.TempDir()
	pushed := filepath.Join(pushDir, "podinfo-2.0.0.tgz")
	for _, f := range []struct {
		path string
		data []byte
	}{{pushed, tgz}, {pushed + ".prov", []byte(prov)}} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	helmDigest := helm.push(t, pushed, reg.Host, "upstream")
	_, theirs := registryManifest(t, reg.Host, "upstream/podinfo", "2.0.0")
	if digest.FromBytes(theirs) != helmDigest {
		t.Fatalf("registry serves %s, helm push printed %s", digest.FromBytes(theirs), helmDigest)
	}
	var hm ocispec.Manifest
	if err := json.Unmarshal(theirs, &hm); err != nil {
		t.Fatal(err)
	}
	if again, err := json.Marshal(hm); err != nil || !bytes.Equal(again, theirs) {
		t.Fatalf("helm's manifest does not round-trip through the OCI manifest structure (%v):\n%s\n%s", err, theirs, again)
	}
	if _, ok := hm.Annotations[ocispec.AnnotationCreated]; !ok {
		t.Fatalf("helm push wrote no creation time: %s", theirs)
	}
	delete(hm.Annotations, ocispec.AnnotationCreated)
	withoutCreated, err := json.Marshal(hm)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(withoutCreated, ours) {
		t.Fatalf("Ferry's manifest differs from helm push's less its creation time:\nferry: %s\nhelm:  %s", ours, withoutCreated)
	}

	// Ferry's chart, copied to a registry as sync serves it, is what helm pull reads.
	dstRepo, err := remote.NewRepository(reg.Host + "/ferry/podinfo")
	if err != nil {
		t.Fatal(err)
	}
	dstRepo.PlainHTTP = true
	if err := oras.CopyGraph(ctx, l, dstRepo, item.Descriptor, oras.DefaultCopyGraphOptions); err != nil {
		t.Fatal(err)
	}
	if err := dstRepo.Tag(ctx, item.Descriptor, item.Revision); err != nil {
		t.Fatal(err)
	}
	pullDir := t.TempDir()
	helm.run(t, pullDir, "pull", "oci://"+reg.Host+"/ferry/podinfo", "--version", "2.0.0", "--plain-http", "--prov", "-d", pullDir)
	for name, want := range map[string][]byte{"podinfo-2.0.0.tgz": tgz, "podinfo-2.0.0.tgz.prov": []byte(prov)} {
		got, err := os.ReadFile(filepath.Join(pullDir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("helm pull of Ferry's chart: %s differs from the repository's (%v)", name, err)
		}
	}

	root, err := bundle.Write(ctx, l, &bundle.Bundle{Sequence: 1, Created: chartTime, Expires: chartTime.Add(24 * time.Hour), Items: []bundle.Item{item}}, nil)
	if err != nil {
		t.Fatalf("the chart item does not make a valid bundle: %v", err)
	}
	t.Logf("manifest %s = helm push's %s less its creation time; helm pulled it; bundle root %s", item.Descriptor.Digest, helmDigest, root.Digest)
}

func TestChartFromOCIRegistry(t *testing.T) {
	ctx := context.Background()
	reg := testenv.NewRegistry(t)
	helm := newChartHelm(t)
	dir := t.TempDir()
	pushed := map[string]digest.Digest{}
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0", "3.0.0+build.5"} {
		pushed[v] = helm.push(t, chartPackage(t, dir, "podinfo", v, nil), reg.Host, "charts")
	}
	o := &fetch.Options{PlainHTTP: []string{reg.Host}}
	tests := []struct {
		name, chartName, version, want, tag string
	}{
		{name: "exact version", version: "1.0.0", want: "1.0.0", tag: "1.0.0"},
		{name: "range picks the highest match", version: ">=1.0.0 <2.0.0", want: "1.1.0", tag: "1.1.0"},
		{name: "exact version with build metadata", version: "3.0.0+build.5", want: "3.0.0+build.5", tag: "3.0.0_build.5"},
		{name: "range reads _ in tags as +", version: ">=2.5.0", want: "3.0.0+build.5", tag: "3.0.0_build.5"},
		{name: "item named apart from the chart", chartName: "podinfo", version: "~2.0", want: "2.0.0", tag: "2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := spec.Chart{Name: "podinfo", Repository: "oci://" + reg.Host + "/charts", Version: tt.version}
			if tt.chartName != "" {
				src.Name, src.Chart = "web", tt.chartName
			}
			l := chartLayout(t)
			item, err := fetch.Chart(ctx, l, src, o)
			if err != nil {
				t.Fatal(err)
			}
			wantSource := "oci://" + reg.Host + "/charts/podinfo"
			if item.Name != src.Name || item.Kind != bundle.KindChart || item.Revision != tt.want || item.Source != wantSource {
				t.Fatalf("item %+v: want name %s, kind chart, revision %s, source %s", item, src.Name, tt.want, wantSource)
			}
			if item.Descriptor.Digest != pushed[tt.want] {
				t.Fatalf("carried manifest %s, helm push printed %s", item.Descriptor.Digest, pushed[tt.want])
			}
			regDesc, regBytes := registryManifest(t, reg.Host, "charts/podinfo", tt.tag)
			ours, _ := chartManifest(t, l, item.Descriptor)
			if regDesc.Digest != item.Descriptor.Digest || !bytes.Equal(ours, regBytes) {
				t.Fatalf("carried manifest is not the registry's byte for byte (%s vs %s)", item.Descriptor.Digest, regDesc.Digest)
			}
			m := chartCheckLayout(t, l, item)
			if m.Config.MediaType != registry.ConfigMediaType {
				t.Fatalf("config media type %q", m.Config.MediaType)
			}
		})
	}
}

// chartCredentialRegistry starts a Distribution registry that demands a user name and password
// (htpasswd), and returns its host.
func chartCredentialRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	bin, err := testenv.ToolPath("registry")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		host := chartFreeHost(t)
		config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\nauth:\n  htpasswd:\n    realm: ferry-test\n    path: %s\n",
			filepath.Join(dir, "data"), host, filepath.Join(dir, "htpasswd"))
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yaml"))
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone if the test binary dies
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() { cmd.Process.Kill(); <-done }
		if chartWaitUnauthorized(host, done) {
			t.Cleanup(stop)
			return host
		}
		stop()
		if attempt == 2 {
			t.Fatalf("registry with htpasswd did not start on %s:\n%s", host, out.String())
		}
	}
}

func TestChartRegistryCredentials(t *testing.T) {
	const user, pass = "ferry", "s3cret-registry-password"
	host := chartCredentialRegistry(t, user, pass)
	helm := newChartHelm(t)
	want := helm.push(t, chartPackage(t, t.TempDir(), "podinfo", "1.0.0", nil), host, "charts", "--username", user, "--password", pass)

	authConfig := func(t *testing.T, path, user, pass string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, chartB64(user+":"+pass))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name         string
		helm, docker string // passwords in Helm's and Docker's configurations, "" for none
		ok           bool
	}{
		{name: "Helm's registry configuration", helm: pass, ok: true},
		{name: "Docker's configuration", docker: pass, ok: true},
		{name: "Helm's before Docker's", helm: pass, docker: "wrong-docker-password", ok: true},
		{name: "wrong password", helm: "wrong-helm-password"},
		{name: "no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			helmConfig, dockerDir := filepath.Join(dir, "helm", "config.json"), filepath.Join(dir, "docker")
			if tt.helm != "" {
				authConfig(t, helmConfig, user, tt.helm)
			}
			if tt.docker != "" {
				authConfig(t, filepath.Join(dockerDir, "config.json"), user, tt.docker)
			}
			t.Setenv("HELM_REGISTRY_CONFIG", helmConfig)
			t.Setenv("DOCKER_CONFIG", dockerDir)
			var logs bytes.Buffer
			src := spec.Chart{Name: "podinfo", Repository: "oci://" + host + "/charts", Version: "1.0.0"}
			l := chartLayout(t)
			item, err := fetch.Chart(context.Background(), l, src, &fetch.Options{PlainHTTP: []string{host}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			for _, secret := range []string{pass, tt.helm, tt.docker, chartB64(user + ":" + pass)} {
				if secret != "" && (strings.Contains(fmt.Sprint(err), secret) || strings.Contains(logs.String(), secret) || strings.Contains(item.Source, secret)) {
					t.Fatalf("a credential leaked into the error, the log or the item: %v / %s", err, logs.String())
				}
			}
			if !tt.ok {
				t.Log(err)
				if err == nil || !strings.Contains(err.Error(), "chart podinfo (oci://"+host+"/charts/podinfo): ") || !strings.Contains(err.Error(), "fix: log in to "+host+" with 'helm registry login'") {
					t.Fatalf("want an error naming the chart and saying to log in, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if item.Descriptor.Digest != want {
				t.Fatalf("carried %s, helm push printed %s", item.Descriptor.Digest, want)
			}
			chartCheckLayout(t, l, item)
		})
	}
}

func TestChartDependencies(t *testing.T) {
	ctx := context.Background()
	repo := chartRepo(t)
	reg := testenv.NewRegistry(t)
	helm := newChartHelm(t)
	deps := []*chart.Dependency{
		{Name: "common", Version: "1.x", Repository: "https://charts.example/common"},
		{Name: "redis", Version: "17.x", Repository: "https://charts.example/bitnami"},
	}
	// Packaged into the repository's folder; the next AddChart indexes them.
	chartPackage(t, repo.Dir, "vendored", "1.0.0", deps, "common", "redis")
	chartPackage(t, repo.Dir, "unvendored", "1.0.0", deps, "common")
	if _, err := repo.AddChart("other", "1.0.0", chartTemplates, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	helm.push(t, chartPackage(t, dir, "vendored", "1.0.0", deps, "common", "redis"), reg.Host, "charts")
	helm.push(t, chartPackage(t, dir, "unvendored", "1.0.0", deps, "common"), reg.Host, "charts")

	tests := []struct {
		name, repository, chart string
		ok                      bool
	}{
		{name: "vendored, HTTP repository", repository: repo.URL, chart: "vendored", ok: true},
		{name: "vendored, OCI registry", repository: "oci://" + reg.Host + "/charts", chart: "vendored", ok: true},
		{name: "missing, HTTP repository", repository: repo.URL, chart: "unvendored"},
		{name: "missing, OCI registry", repository: "oci://" + reg.Host + "/charts", chart: "unvendored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := chartLayout(t)
			src := spec.Chart{Name: tt.chart, Repository: tt.repository, Version: "1.0.0"}
			item, err := fetch.Chart(ctx, l, src, &fetch.Options{PlainHTTP: []string{reg.Host}})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				chartCheckLayout(t, l, item)
				return
			}
			if err == nil {
				t.Fatal("a chart with an unvendored dependency was carried")
			}
			msg := err.Error()
			t.Log(msg)
			for _, want := range []string{"chart unvendored (" + tt.repository + "/unvendored): ", "redis 17.x from https://charts.example/bitnami", "helm dependency build"} {
				if !strings.Contains(msg, want) {
					t.Fatalf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "common") {
				t.Fatalf("error %q names the vendored dependency", msg)
			}
			chartEmpty(t, l)
		})
	}
}

func TestChartErrors(t *testing.T) {
	repo := chartRepo(t)
	reg := testenv.NewRegistry(t)
	helm := newChartHelm(t)
	dir := t.TempDir()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		helm.push(t, chartPackage(t, dir, "podinfo", v, nil), reg.Host, "charts")
	}
	// An archive that no longer matches the index's digest.
	if _, err := repo.AddChart("tampered", "1.0.0", chartTemplates, nil); err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(repo.Dir, "podinfo-1.0.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo.Dir, "tampered-1.0.0.tgz"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	// A provenance file for another archive.
	if err := os.WriteFile(filepath.Join(repo.Dir, "podinfo-1.1.0.tgz.prov"), []byte("-----BEGIN PGP SIGNED MESSAGE-----\nfiles:\n  podinfo-1.1.0.tgz: sha256:0000000000000000000000000000000000000000000000000000000000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A server that accepts connections and never answers: only the deadline ends a fetch.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ociRepo := "oci://" + reg.Host + "/charts"

	tests := []struct {
		name       string
		ctx        context.Context
		deadline   time.Duration
		src        spec.Chart
		want       []string
		is         error
		within     time.Duration
		wantSource string
	}{
		{name: "range nothing matches, HTTP", src: spec.Chart{Name: "podinfo", Repository: repo.URL, Version: ">=3.0.0"},
			want: []string{`no version matches ">=3.0.0"`, "versions seen: 2.0.0, 1.1.0, 1.0.0"}},
		{name: "range nothing matches, OCI", src: spec.Chart{Name: "podinfo", Repository: ociRepo, Version: "^2"},
			want: []string{`no version matches "^2"`, "versions seen: 1.1.0, 1.0.0"}},
		{name: "exact version missing", src: spec.Chart{Name: "podinfo", Repository: repo.URL, Version: "1.0.1"},
			want: []string{`no version matches "1.0.1"`, "versions seen: 2.0.0, 1.1.0, 1.0.0"}},
		{name: "no such chart, HTTP", src: spec.Chart{Name: "nginx", Repository: repo.URL, Version: "1.0.0"},
			want: []string{`index.yaml has no chart named "nginx"`}},
		{name: "no such chart, OCI", src: spec.Chart{Name: "nginx", Repository: ociRepo, Version: "1.0.0"},
			want: []string{"list tags"}},
		{name: "archive differs from the index's digest", src: spec.Chart{Name: "tampered", Repository: repo.URL, Version: "1.0.0"},
			want: []string{"index.yaml says sha256:", "hashes to sha256:" + digest.FromBytes(other).Encoded()}},
		{name: "provenance for another archive", src: spec.Chart{Name: "podinfo", Repository: repo.URL, Version: "1.1.0"},
			want: []string{"does not name the archive's digest"}},
		{name: "unreachable HTTP repository", src: spec.Chart{Name: "podinfo", Repository: "http://127.0.0.1:1", Version: "1.0.0"},
			want: []string{"download index.yaml", "connection refused"}, within: 10 * time.Second},
		{name: "unreachable OCI registry", src: spec.Chart{Name: "podinfo", Repository: "oci://127.0.0.1:1/charts", Version: ">=1.0.0"},
			want: []string{"connection refused"}, within: 10 * time.Second},
		{name: "credentials stay out of errors", src: spec.Chart{Name: "podinfo", Repository: "http://user:hunter2@127.0.0.1:1/charts", Version: "1.0.0"},
			want: []string{"download index.yaml"}, wantSource: "http://127.0.0.1:1/charts/podinfo"},
		{name: "HTTP repository that never answers", deadline: 300 * time.Millisecond, src: spec.Chart{Name: "podinfo", Repository: "http://" + silent.Addr().String(), Version: "1.0.0"},
			want: []string{"download index.yaml"}, is: context.DeadlineExceeded, within: 10 * time.Second},
		{name: "OCI registry that never answers", deadline: 300 * time.Millisecond, src: spec.Chart{Name: "podinfo", Repository: "oci://" + silent.Addr().String() + "/charts", Version: "1.0.0"},
			is: context.DeadlineExceeded, within: 10 * time.Second},
		{name: "cancelled context", ctx: cancelled, src: spec.Chart{Name: "podinfo", Repository: repo.URL, Version: "1.0.0"},
			is: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			source := tt.wantSource
			if source == "" {
				source = strings.TrimSuffix(tt.src.Repository, "/") + "/" + tt.src.ChartName()
			}
			start := time.Now()
			l := chartLayout(t)
			_, err := fetch.Chart(ctx, l, tt.src, &fetch.Options{PlainHTTP: []string{reg.Host, "127.0.0.1:1", silent.Addr().String()}})
			took := time.Since(start)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			if prefix := fmt.Sprintf("chart %s (%s): ", tt.src.Name, source); !strings.HasPrefix(msg, prefix) {
				t.Fatalf("error %q does not start with %q", msg, prefix)
			}
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Fatalf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q shows a password", msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %q is not %v", msg, tt.is)
			}
			if tt.within > 0 && took > tt.within {
				t.Fatalf("took %s, want under %s", took, tt.within)
			}
			chartEmpty(t, l)
		})
	}
}

// chartEmpty fails unless a layout holds no blob: a failed fetch leaves nothing behind.
func chartEmpty(t *testing.T, l *bundle.Layout) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(l.Dir(), "blobs", "sha256"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("a failed fetch left %d blobs in the layout (%v)", len(entries), err)
	}
}

// chartFreeHost returns a loopback host:port that is free now.
func chartFreeHost(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// chartWaitUnauthorized waits until the registry at host asks for credentials, or exits.
func chartWaitUnauthorized(host string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// chartB64 is how Docker's config.json writes user:password.
func chartB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The chart item's media types are written in bundle (which must not import the Helm SDK);
// they are Helm's own.
func TestChartMediaTypesAreHelms(t *testing.T) {
	for _, c := range [][2]string{
		{bundle.ChartConfigMediaType, registry.ConfigMediaType},
		{bundle.ChartLayerMediaType, registry.ChartLayerMediaType},
		{bundle.ChartLegacyLayerMediaType, registry.LegacyChartLayerMediaType},
		{bundle.ChartProvenanceMediaType, registry.ProvLayerMediaType},
	} {
		if c[0] != c[1] {
			t.Errorf("bundle says %q, Helm says %q", c[0], c[1])
		}
	}
}

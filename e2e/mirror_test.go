package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"oras.land/oras-go/v2"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// upstream is the connected side's world: a registry with a signed multi-platform image and an
// OCI chart, a Git server, a Helm repository, and the keys that signed things.
type upstream struct {
	reg      *testenv.Registry
	git      *testenv.GitServer
	helm     *testenv.HelmRepo
	dir      string // HOME for the CLIs, holding cosign keys
	image    string // upstream digest of team/app:1.2.0
	commit   string
	specPath string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	ctx := context.Background()
	u := &upstream{reg: testenv.NewRegistry(t), git: testenv.NewGitServer(t), helm: testenv.NewHelmRepo(t), dir: t.TempDir()}
	var err error
	for _, tag := range []string{"1.0.0", "1.2.0", "2.0.0"} {
		d, err := testenv.PushIndex(ctx, u.reg.Host+"/team/app:"+tag, "linux/amd64", "linux/arm64")
		if err != nil {
			t.Fatal(err)
		}
		if tag == "1.2.0" {
			u.image = d
		}
	}
	pw := []string{"COSIGN_PASSWORD=ferry"}
	must(t, u.dir, pw, "cosign", "generate-key-pair", "--output-key-prefix", "upstream")
	must(t, u.dir, pw, "cosign", "generate-key-pair", "--output-key-prefix", "mirror")
	signed := u.reg.Host + "/team/app@" + u.image
	for _, legacy := range []string{"true", "false"} {
		must(t, u.dir, pw, "cosign", "sign", "--yes", "--key", "upstream.key", "--use-signing-config=false", "--tlog-upload=false",
			"--allow-insecure-registry", "--new-bundle-format="+legacy, signed)
	}
	if _, err = u.git.CreateRepo(ctx, "platform", map[string]string{
		"apps/kustomization.yaml": "resources:\n- configmap.yaml\n",
		"apps/configmap.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n",
		"README.md":               "platform\n",
	}); err != nil {
		t.Fatal(err)
	}
	if err := u.git.Tag(ctx, "platform", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if u.commit, err = u.git.Commit(ctx, "platform", map[string]string{"apps/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\ndata:\n  v: \"2\"\n"}, "v1.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := u.git.Tag(ctx, "platform", "v1.1.0"); err != nil {
		t.Fatal(err)
	}
	tpl := map[string]string{"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"}
	var chart string
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
		if chart, err = u.helm.AddChart("podinfo", v, tpl, nil); err != nil {
			t.Fatal(err)
		}
	}
	must(t, u.dir, nil, "helm", "push", chart, "oci://"+u.reg.Host+"/charts", "--plain-http")

	u.specPath = filepath.Join(u.dir, "ferry.yaml")
	spec := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: Mirror
bundle:
  expires: 720h
git:
  - name: platform
    url: %s
    ref: {semver: ">=1.0.0 <2.0.0"}
    paths: [apps]
charts:
  - name: podinfo
    repository: %s
    version: ">=1.0.0 <2.0.0"
  - name: podinfo-oci
    repository: oci://%s/charts
    chart: podinfo
    version: 2.0.0
images:
  - name: app
    image: %s/team/app
    semver: ">=1.0.0 <2.0.0"
`, u.git.RepoURL("platform"), u.helm.URL, u.reg.Host, u.reg.Host)
	if err := os.WriteFile(u.specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// inspect runs `mirror verify --output json` on a bundle and returns its summary.
type summary struct {
	Root     string `json:"root"`
	Sequence uint64 `json:"sequence"`
	Items    []struct {
		Name, Kind, Source, Revision, Digest string
		Referrers                            int
	} `json:"items"`
	Verified *bool `json:"signatureVerified"`
}

func verifyBundle(t *testing.T, dir string, env []string, args ...string) summary {
	t.Helper()
	out := must(t, dir, env, "mirror", append([]string{"verify", "--key", "mirror.pub", "--output", "json"}, args...)...)
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("verify output: %v\n%s", err, out)
	}
	if s.Verified == nil || !*s.Verified {
		t.Fatalf("verify did not say verified: %s", out)
	}
	return s
}

func TestMirrorPacksOneSpecToEveryMedium(t *testing.T) {
	u := newUpstream(t)
	minio := testenv.NewMinIO(t)
	if _, err := minio.MakeBucket(context.Background(), "transfer"); err != nil {
		t.Fatal(err)
	}
	s3env := []string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "COSIGN_PASSWORD=ferry"}
	out := filepath.Join(u.dir, "out")
	must(t, u.dir, s3env, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host,
		"--out", filepath.Join(out, "dir"),
		"--tar", filepath.Join(out, "parts", "bundle.tar"), "--split", "64KiB",
		"--s3", "s3://transfer/ferry", "--s3-endpoint", minio.Endpoint, "--s3-insecure", "--s3-part-size", "128KiB",
		"--registry", u.reg.Host+"/ferry/bundles:latest")
	tarOut := filepath.Join(out, "bundle.tar")
	second := must(t, u.dir, s3env, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host,
		"--tar", tarOut, "--output", "json")
	t.Logf("second pack: %s", second)

	sources := map[string][]string{
		"directory": {filepath.Join(out, "dir")},
		"parts":     {filepath.Join(out, "parts", "bundle.tar.parts.json")},
		"s3":        {"s3://transfer/ferry/" + bundleName(t, filepath.Join(out, "dir")) + ".parts.json", "--s3-endpoint", minio.Endpoint, "--s3-insecure"},
		"registry":  {"oci://" + u.reg.Host + "/ferry/bundles:latest", "--plain-http", u.reg.Host},
		"tar":       {tarOut},
	}
	summaries := map[string]summary{}
	for medium, args := range sources {
		s := verifyBundle(t, u.dir, s3env, args...)
		summaries[medium] = s
		t.Logf("%s: bundle %d, root %s, %d items verified", medium, s.Sequence, s.Root, len(s.Items))
	}
	first := summaries["directory"]
	for _, medium := range []string{"parts", "s3", "registry"} {
		if summaries[medium].Root != first.Root {
			t.Fatalf("%s holds root %s, the directory %s", medium, summaries[medium].Root, first.Root)
		}
	}
	// Every item resolved as the upstreams say, images at their upstream digests.
	want := map[string]string{"app": u.image, "platform": u.commit, "podinfo": "1.1.0", "podinfo-oci": "2.0.0"}
	for _, it := range first.Items {
		if want[it.Name] != it.Revision {
			t.Fatalf("item %s at %s, want %s", it.Name, it.Revision, want[it.Name])
		}
		if it.Name == "app" && (it.Digest != u.image || it.Referrers < 2) {
			t.Fatalf("image app carried as %s with %d referrers, upstream %s", it.Digest, it.Referrers, u.image)
		}
	}
	// Packing the same spec twice against unchanged upstreams gives the same items and blobs.
	again := summaries["tar"]
	if fmt.Sprint(again.Items) != fmt.Sprint(first.Items) {
		t.Fatalf("second pack's items differ:\n%v\n%v", again.Items, first.Items)
	}
	a, b := itemBlobs(t, filepath.Join(out, "dir")), itemBlobsOfTar(t, tarOut)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("second pack's item blobs differ: %d vs %d", len(a), len(b))
	}
	t.Logf("two packs: same %d items and %d item blobs", len(first.Items), len(a))
}

// bundleName is the name a bundle's parts get: bundle-<sequence>.tar.
func bundleName(t *testing.T, dir string) string {
	res, err := bundle.ReadLayout(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("bundle-%d.tar", res.Bundle.Sequence)
}

// itemVisitor collects the digests of the blobs that belong to items: not the root or its
// signatures, which change with the creation time.
func itemVisitor(out *[]string) bundle.Visitor {
	return func(_ context.Context, e bundle.Entry, _ io.Reader) error {
		switch e.Item {
		case "root", "attachment", bundle.IndexFile, bundle.LayoutFile:
		default:
			*out = append(*out, string(e.Descriptor.Digest))
		}
		return nil
	}
}

func itemBlobs(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if _, err := bundle.ReadLayout(context.Background(), dir, bundle.WithVisitor(itemVisitor(&out))); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func itemBlobsOfTar(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	if _, err := bundle.ReadTar(context.Background(), f, bundle.WithVisitor(itemVisitor(&out))); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// What the bundle carries is enough to verify an image's upstream signature with stock cosign,
// in a registry that has never seen the upstream; and cosign verifies the bundle's own signature.
func TestMirroredImageVerifiesWithStockCosign(t *testing.T) {
	u := newUpstream(t)
	env := []string{"COSIGN_PASSWORD=ferry"}
	dir := filepath.Join(u.dir, "bundle")
	must(t, u.dir, env, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host, "--out", dir)
	res, err := bundle.ReadLayout(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	u.reg.Stop() // from here on, the upstream is out of reach

	fresh := testenv.NewRegistry(t)
	app := res.Bundle.Item("app")
	target := fresh.Host + "/mirrored/app"
	// oras copies the image with its referrers (the Sigstore bundle) out of the bundle directory.
	must(t, u.dir, nil, "oras", "cp", "-r", "--from-oci-layout", dir+"@"+string(app.Descriptor.Digest), "--to-plain-http", target+":1.2.0")
	// The tag-based signature goes to the tag cosign looks for. Stock oras cannot name it in the
	// layout (index.json names items, not their signatures), so Ferry's own library copies it,
	// as its registry will serve it.
	l, err := bundle.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := medium.NewRepository(target, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range app.Referrers {
		if r.Tag == "" {
			continue
		}
		if err := oras.CopyGraph(context.Background(), l, repo, r.Descriptor, oras.DefaultCopyGraphOptions); err != nil {
			t.Fatal(err)
		}
		if err := repo.Tag(context.Background(), r.Descriptor, r.Tag); err != nil {
			t.Fatal(err)
		}
	}
	ref := target + "@" + string(app.Descriptor.Digest)
	for _, format := range []string{"--new-bundle-format=true", "--new-bundle-format=false"} {
		out := must(t, u.dir, nil, "cosign", "verify", "--key", "upstream.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry", format, ref)
		if !strings.Contains(out, string(app.Descriptor.Digest)) {
			t.Fatalf("cosign verify %s printed no claim for the image:\n%s", format, out)
		}
		t.Logf("cosign verify %s %s: verified with the upstream key, upstream unreachable", format, ref)
	}
	if r := run(t, u.dir, nil, "cosign", "verify", "--key", "mirror.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry", ref); r.Err == nil {
		t.Fatal("cosign verified the upstream image with an unrelated key")
	}

	// The bundle's own signature, pushed with the bundle, verifies with stock cosign.
	bundles := fresh.Host + "/ferry/bundles"
	if _, err := medium.Write(context.Background(), medium.Registry(bundles, "latest"), dir, medium.WithPlainHTTP(fresh.Host)); err != nil {
		t.Fatal(err)
	}
	out := must(t, u.dir, nil, "cosign", "verify", "--key", "mirror.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry",
		"--new-bundle-format=false", bundles+"@"+string(res.Root.Digest))
	if !strings.Contains(out, string(res.Root.Digest)) {
		t.Fatalf("cosign verify of the bundle printed no claim for its root:\n%s", out)
	}
	t.Logf("cosign verify --key mirror.pub %s@%s: the bundle's signature verifies with stock cosign", bundles, res.Root.Digest)
}

// Flipping any single byte of any blob makes `mirror verify` fail, naming what was hit.
func TestMirrorVerifyCatchesEveryFlippedByte(t *testing.T) {
	u := newUpstream(t)
	dir := filepath.Join(u.dir, "bundle")
	must(t, u.dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host, "--out", dir)
	verifyBundle(t, u.dir, nil, dir)
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range blobs {
		path := filepath.Join(dir, "blobs", "sha256", b.Name())
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		flipped := append([]byte{}, orig...)
		flipped[(i*7919)%len(flipped)] ^= 0x20
		if err := os.WriteFile(path, flipped, 0o644); err != nil {
			t.Fatal(err)
		}
		r := run(t, u.dir, nil, "mirror", "verify", "--key", "mirror.pub", dir)
		if r.Err == nil {
			t.Fatalf("blob %s flipped and the bundle still verified", b.Name())
		}
		if !strings.Contains(r.Stderr, b.Name()) || !strings.Contains(r.Stderr, "(check: ") {
			t.Fatalf("blob %s flipped: error does not name the blob and the check:\n%s", b.Name(), r.Stderr)
		}
		if i == 0 {
			t.Logf("flipped a byte of %s: %s", b.Name(), strings.TrimSpace(r.Stderr))
		}
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verifyBundle(t, u.dir, nil, dir)
	t.Logf("%d blobs: each one flipped was caught and named", len(blobs))
}

// Mistakes in a spec stop the pack with a message that names the field or the source.
func TestMirrorSpecErrorsNameTheFieldOrSource(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, spec, want string }{
		{"unknown field", "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\nimages:\n  - name: app\n    image: r.example/app\n    tag: v1\n    tagg: v2\n", "images[0].tagg: unknown field"},
		{"bad semver range", "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ncharts:\n  - name: c\n    repository: https://c.example\n    version: '>=one'\n", "charts[0].version: \">=one\" is not a semver range"},
		{"unreachable source", "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\ngit:\n  - name: platform\n    url: http://127.0.0.1:1/platform.git\n    ref: {branch: main}\n", "git platform (http://127.0.0.1:1/platform.git)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(c.spec), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(c.name, " ", "-"))
			r := run(t, dir, nil, "mirror", "pack", "-f", path, "--out", out)
			if r.Err == nil {
				t.Fatal("pack succeeded")
			}
			if !strings.Contains(r.Stderr, c.want) {
				t.Fatalf("error does not contain %q:\n%s", c.want, r.Stderr)
			}
			if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
				t.Fatal("a failed pack left an index.json: a bundle that looks complete")
			}
			t.Logf("%s: %s", c.name, strings.TrimSpace(r.Stderr))
		})
	}
}

package testenv_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/minio/minio-go/v7"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/getter"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

func TestRegistryRoundTrip(t *testing.T) {
	reg := testenv.NewRegistry(t)
	ctx := context.Background()

	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/ferry/roundtrip:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	pulled, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	got, err := pulled.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("pulled digest %s, pushed %s", got, want)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		total += n
	}
	if len(layers) != 3 || total == 0 {
		t.Fatalf("pulled %d layers with %d bytes, want 3 layers", len(layers), total)
	}
	t.Logf("round trip: registry %s: pushed and pulled %s (%d layers, %d bytes)", reg.Host, want, len(layers), total)
}

func TestMinIORoundTrip(t *testing.T) {
	m := testenv.NewMinIO(t)
	ctx := context.Background()
	bucket, err := m.MakeBucket(ctx, "ferry-roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	client, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("ferry "), 100_000)
	if _, err := client.PutObject(ctx, bucket, "bundles/part-0001", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	obj, err := client.GetObject(ctx, bucket, "bundles/part-0001", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes that differ from the %d put", len(got), len(body))
	}
	t.Logf("round trip: minio %s: put and read back s3://%s/bundles/part-0001 (%d bytes)", m.Endpoint, bucket, len(got))
}

func TestClusterRoundTrip(t *testing.T) {
	c := testenv.NewCluster(t)
	ctx := context.Background()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferry-test"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "roundtrip", Namespace: "ferry-test"},
		Data:       map[string]string{"bundle": "42"},
	}
	if _, err := cs.CoreV1().ConfigMaps("ferry-test").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create configmap: %v", err)
	}
	got, err := cs.CoreV1().ConfigMaps("ferry-test").Get(ctx, "roundtrip", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get configmap: %v", err)
	}
	if got.Data["bundle"] != "42" || got.UID == "" {
		t.Fatalf("read back %+v", got.Data)
	}
	version, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Kubeconfig); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	t.Logf("round trip: kube-apiserver %s (%s): created and read ConfigMap ferry-test/roundtrip (uid %s)", c.Host, version.GitVersion, got.UID)
}

func TestGitServerClone(t *testing.T) {
	g := testenv.NewGitServer(t)
	ctx := context.Background()
	first, err := g.CreateRepo(ctx, "apps", map[string]string{
		"README.md":                    "apps\n",
		"clusters/prod/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	second, err := g.Commit(ctx, "apps", map[string]string{"README.md": "apps, second revision\n"}, "second")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Tag(ctx, "apps", "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: g.RepoURL("apps")})
	if err != nil {
		t.Fatalf("clone %s: %v", g.RepoURL("apps"), err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	if head.Hash().String() != second {
		t.Fatalf("cloned head %s, pushed %s", head.Hash(), second)
	}
	tag, err := r.Reference(plumbing.NewTagReferenceName("v1.0.0"), true)
	if err != nil || tag.Hash().String() != second {
		t.Fatalf("tag v1.0.0: %v %v", tag, err)
	}
	if _, err := r.CommitObject(plumbing.NewHash(first)); err != nil {
		t.Fatalf("first commit %s missing from clone: %v", first, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "clusters/prod/configmap.yaml"))
	if err != nil || !strings.Contains(string(b), "name: demo") {
		t.Fatalf("cloned file: %q %v", b, err)
	}
	t.Logf("round trip: git server %s: cloned with go-git at %s (tag v1.0.0, 2 commits)", g.RepoURL("apps"), second)
}

func TestHelmRepoFetch(t *testing.T) {
	h := testenv.NewHelmRepo(t)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := h.AddChart("podinfo", v, map[string]string{
			"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting }}\n",
		}, map[string]any{"greeting": "hello"}); err != nil {
			t.Fatal(err)
		}
	}
	getters := getter.Getters()
	cr, err := repo.NewChartRepository(&repo.Entry{Name: "test", URL: h.URL}, getters)
	if err != nil {
		t.Fatal(err)
	}
	cr.CachePath = t.TempDir()
	indexPath, err := cr.DownloadIndexFile()
	if err != nil {
		t.Fatalf("download index from %s: %v", h.URL, err)
	}
	idx, err := repo.LoadIndexFile(indexPath)
	if err != nil {
		t.Fatal(err)
	}
	cv, err := idx.Get("podinfo", "~1.0")
	if err != nil {
		t.Fatalf("resolve podinfo ~1.0: %v", err)
	}
	if cv.Version != "1.0.0" || len(cv.URLs) != 1 {
		t.Fatalf("resolved %s %v", cv.Version, cv.URLs)
	}
	latest, err := idx.Get("podinfo", "")
	if err != nil || latest.Version != "1.1.0" {
		t.Fatalf("latest podinfo: %v %v", latest, err)
	}
	g, err := getters.ByScheme("http")
	if err != nil {
		t.Fatal(err)
	}
	buf, err := g.Get(cv.URLs[0], getter.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("download %s: %v", cv.URLs[0], err)
	}
	size := buf.Len()
	ch, err := loader.LoadArchive(buf)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	if ch.Metadata.Name != "podinfo" || ch.Metadata.Version != "1.0.0" || len(ch.Templates) != 1 {
		t.Fatalf("fetched chart %s-%s with %d templates", ch.Metadata.Name, ch.Metadata.Version, len(ch.Templates))
	}
	t.Logf("round trip: helm repo %s: resolved podinfo ~1.0 to %s and fetched it (%d bytes, digest %s)", h.URL, cv.Version, size, cv.Digest)
}

// TestNetNSLetsOutOnlyAllowedPorts checks the fence the agent's no-network test relies on: a
// process in the namespace reaches the forwarded port, and an attempt to reach anything else
// is dropped and counted.
func TestNetNSLetsOutOnlyAllowedPorts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello from the host")
			c.Close()
		}
	}()
	ns := testenv.NewNetNS(t)
	fwd := testenv.NewForwarder(t, ns.HostIP, ln.Addr().String())
	ns.Allow(t, fwd.Port())
	ctx := context.Background()
	out, err := ns.Command(ctx, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && cat <&3", ns.HostIP, fwd.Port())).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from the host") {
		t.Fatalf("allowed port: %v: %s", err, out)
	}
	if fwd.Connections() != 1 {
		t.Fatalf("forwarder relayed %d connections, want 1", fwd.Connections())
	}
	allowed, denied, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if allowed != 1 || denied != 0 {
		t.Fatalf("after the allowed connection: allowed %d denied %d, want 1 and 0", allowed, denied)
	}
	// Anything else is dropped and counted: another host port, and an address beyond the host.
	for _, dst := range []string{fmt.Sprintf("%s/%d", ns.HostIP, fwd.Port()+1), "192.0.2.1/80"} {
		if out, err := ns.Command(ctx, "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/"+dst).CombinedOutput(); err == nil {
			t.Fatalf("connection to %s succeeded from the namespace: %s", dst, out)
		}
	}
	if _, denied, err = ns.Counters(); err != nil || denied == 0 {
		t.Fatalf("denied counter %d (%v) after two forbidden connections, want > 0", denied, err)
	}
}

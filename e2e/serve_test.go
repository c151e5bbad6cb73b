package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/serve/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// startServe runs `sync serve` on a free loopback port until the test ends.
func startServe(t *testing.T, dir, cacheDir string, extra ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(bin, "sync"), append([]string{"serve", "--cache", cacheDir, "--listen", addr}, extra...)...)
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "serve.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scheme := "http://"
	if slices.Contains(extra, "--tls-cert") {
		scheme = "https://"
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := client.Get(scheme + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			t.Fatalf("sync serve did not start:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// After a bundle is imported, stock clients pull from `sync serve` with the upstreams gone.
func TestServeToStockClients(t *testing.T) {
	u := newUpstream(t)
	dir := filepath.Join(u.dir, "bundle")
	must(t, u.dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host, "--out", dir)
	res, err := bundle.ReadLayout(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	u.reg.Stop()
	u.git.Stop()
	u.helm.Stop()
	cacheDir := filepath.Join(u.dir, "cache")
	must(t, u.dir, nil, "sync", "import", "--cache", cacheDir, "--key", "mirror.pub", dir)
	host := startServe(t, u.dir, cacheDir)

	app := res.Bundle.Item("app")
	appRepo, appTag := registry.RepositoryName(*app)
	ref := host + "/" + appRepo
	// crane: pull by tag, the digest is upstream's.
	if got := strings.TrimSpace(must(t, u.dir, nil, "crane", "digest", "--insecure", ref+":"+appTag)); got != u.image {
		t.Fatalf("crane digest %s:%s = %s, upstream %s", ref, appTag, got, u.image)
	}
	must(t, u.dir, nil, "crane", "pull", "--insecure", "--format=oci", "--platform=all", ref+"@"+u.image, filepath.Join(u.dir, "crane-pull"))
	must(t, u.dir, nil, "crane", "validate", "--insecure", "--remote", ref+"@"+u.image)
	t.Logf("crane pulled and validated %s@%s", ref, u.image)
	// skopeo: copy the whole multi-platform image out into an OCI layout.
	must(t, u.dir, nil, "skopeo", "copy", "--all", "--src-tls-verify=false", "docker://"+ref+":"+appTag, "oci:"+filepath.Join(u.dir, "skopeo-copy")+":app")
	if got := strings.TrimSpace(must(t, u.dir, nil, "skopeo", "inspect", "--raw", "oci:"+filepath.Join(u.dir, "skopeo-copy")+":app")); !strings.Contains(got, "application/vnd.oci.image.index.v1+json") {
		t.Fatalf("skopeo copied something other than the index:\n%s", got)
	}
	t.Logf("skopeo copied docker://%s:%s --all into an OCI layout", ref, appTag)
	// oras: pull the OCI chart's content by tag.
	chart := res.Bundle.Item("podinfo-oci")
	chartRepo, chartTag := registry.RepositoryName(*chart)
	must(t, u.dir, nil, "oras", "pull", "--plain-http", "-o", filepath.Join(u.dir, "oras-pull"), host+"/"+chartRepo+":"+chartTag)
	t.Logf("oras pulled %s/%s:%s", host, chartRepo, chartTag)
	// oras: the Git source's tag names its Flux artifact alone, as `flux push artifact` lays it
	// out (config of Flux's type, one tar+gzip layer), so an OCIRepository reads the tree.
	gitRepo, gitTag := registry.RepositoryName(*res.Bundle.Item("platform"))
	var fluxManifest ocispec.Manifest
	if err := json.Unmarshal([]byte(must(t, u.dir, nil, "oras", "manifest", "fetch", "--plain-http", host+"/"+gitRepo+":"+gitTag)), &fluxManifest); err != nil {
		t.Fatal(err)
	}
	if fluxManifest.Config.MediaType != bundle.GitFluxConfigMediaType || len(fluxManifest.Layers) != 1 || fluxManifest.Layers[0].MediaType != bundle.GitFluxContentMediaType {
		t.Fatalf("%s:%s is not a Flux artifact alone: %+v", gitRepo, gitTag, fluxManifest)
	}
	t.Logf("oras manifest fetch %s/%s:%s: the Flux artifact (%s, one %s layer)", host, gitRepo, gitTag, fluxManifest.Config.MediaType, fluxManifest.Layers[0].MediaType)
	// helm: pull both charts with Helm's OCI client.
	for _, name := range []string{"podinfo", "podinfo-oci"} {
		it := res.Bundle.Item(name)
		repo, tag := registry.RepositoryName(*it)
		out := filepath.Join(u.dir, "helm-"+name)
		os.MkdirAll(out, 0o755)
		must(t, u.dir, nil, "helm", "pull", "oci://"+host+"/"+repo, "--version", tag, "--plain-http", "-d", out)
		files, _ := os.ReadDir(out)
		if len(files) != 1 || !strings.HasSuffix(files[0].Name(), ".tgz") {
			t.Fatalf("helm pull %s gave %v", name, files)
		}
		t.Logf("helm pulled oci://%s/%s --version %s: %s", host, repo, tag, files[0].Name())
	}
	// cosign: the upstream signature verifies against Ferry's registry, in both forms.
	for _, format := range []string{"--new-bundle-format=true", "--new-bundle-format=false"} {
		out := must(t, u.dir, nil, "cosign", "verify", "--key", "upstream.pub", "--insecure-ignore-tlog=true", "--allow-insecure-registry", format, ref+"@"+u.image)
		if !strings.Contains(out, u.image) {
			t.Fatalf("cosign verify %s: no claim for the image:\n%s", format, out)
		}
	}
	t.Logf("cosign verified %s@%s with the upstream key, in both signature forms", ref, u.image)
	// git: clone the Git source from Ferry's Git remote.
	clone := filepath.Join(u.dir, "clone")
	gitEnv := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	must(t, u.dir, gitEnv, "/usr/bin/git", "clone", "--quiet", "http://"+host+"/git/platform.git", clone)
	if head := strings.TrimSpace(must(t, clone, gitEnv, "/usr/bin/git", "rev-parse", "HEAD")); head != u.commit {
		t.Fatalf("git clone from sync serve is at %s, upstream %s", head, u.commit)
	}
	if _, err := os.Stat(filepath.Join(clone, "apps", "kustomization.yaml")); err != nil {
		t.Fatalf("cloned tree: %v", err)
	}
	t.Logf("git clone http://%s/git/platform.git: at %s, the upstream commit", host, u.commit)
	// Nothing can be pushed.
	req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/v2/"+appRepo+"/blobs/uploads/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("push answered %d, want 405", resp.StatusCode)
	}
	// registry-config points containerd at Ferry for the upstream registry.
	cfg := must(t, u.dir, nil, "sync", "registry-config", "--cache", cacheDir, "--endpoint", "https://ferry.example:5000")
	if !strings.Contains(cfg, fmt.Sprintf("server = \"https://%s\"", u.reg.Host)) || !strings.Contains(cfg, "override_path = true") {
		t.Fatalf("registry-config:\n%s", cfg)
	}
	// Only image registries get entries: the Helm repository and the Git server are no
	// registries nodes pull from.
	for _, other := range []string{strings.TrimPrefix(u.helm.URL, "http://"), strings.TrimPrefix(strings.TrimSuffix(u.git.RepoURL("platform"), "/platform.git"), "http://")} {
		if strings.Contains(cfg, other) {
			t.Fatalf("registry-config has an entry for %s, which serves no images:\n%s", other, cfg)
		}
	}
}

// sync serve over TLS with basic authentication: stock crane pulls with credentials, and is
// refused without them.
func TestServeTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	f := wideBundle(t, 1, "", 2, sign)
	cacheDir := filepath.Join(dir, "cache")
	must(t, dir, nil, "sync", "import", "--cache", cacheDir, "--key", "ops.pub", f.Dir)
	cert, key := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("node-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("node:"+string(hash)+"\n"), 0o600)
	host := startServe(t, dir, cacheDir, "--tls-cert", cert, "--tls-key", key, "--htpasswd", filepath.Join(dir, "htpasswd"))

	repo, tag := registry.RepositoryName(*f.Bundle.Item("app"))
	ref := host + "/" + repo + ":" + tag
	if r := run(t, dir, nil, "crane", "digest", "--insecure", ref); r.Err == nil {
		t.Fatal("pulled without credentials")
	}
	auth := base64.StdEncoding.EncodeToString([]byte("node:node-secret"))
	os.MkdirAll(filepath.Join(dir, ".docker"), 0o700)
	os.WriteFile(filepath.Join(dir, ".docker", "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600)
	got := strings.TrimSpace(must(t, dir, nil, "crane", "digest", "--insecure", ref))
	if got != string(f.Bundle.Item("app").Descriptor.Digest) {
		t.Fatalf("crane digest over TLS with credentials: %s", got)
	}
	t.Logf("https://%s with basic auth: refused without credentials, %s with them", host, got)
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their paths.
func selfSigned(t *testing.T, dir string) (string, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

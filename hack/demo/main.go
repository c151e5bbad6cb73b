// Command demo runs Ferry's flow on an embedded default, printing each step and the commands
// it runs. It starts the upstreams a platform team would have (a registry with a multi-platform
// image, a Git repository of manifests, a Helm repository), packs them with `mirror pack` into a
// signed bundle split into parts as if for a USB stick, stops the upstreams, verifies and imports
// the bundle on the far side with `sync import`, shows a damaged part refused, starts a cluster,
// and stops everything it started.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

// ferry runs a Ferry binary from bin/, echoing the command and indenting what it prints.
func ferry(dir string, env []string, name string, args ...string) (string, error) {
	bin, _ := filepath.Abs(filepath.Join("bin", name))
	fmt.Printf("    $ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("      " + line)
	}
	return string(out), err
}

func run(ctx context.Context) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("starting upstreams on loopback (the connected side)")
	reg, err := testenv.StartRegistry(ctx, filepath.Join(dir, "upstream"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	image, err := testenv.PushIndex(ctx, reg.Host+"/demo/app:1.0.0", "linux/amd64", "linux/arm64")
	if err != nil {
		return err
	}
	fmt.Printf("    registry  %s/demo/app:1.0.0 = %s (linux/amd64, linux/arm64)\n", reg.Host, image)
	git, err := testenv.StartGitServer(ctx, filepath.Join(dir, "upstream"))
	if err != nil {
		return err
	}
	defer git.Stop()
	commit, err := git.CreateRepo(ctx, "platform", map[string]string{
		"apps/kustomization.yaml": "resources:\n- configmap.yaml\n",
		"apps/configmap.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\ndata:\n  image: " + reg.Host + "/demo/app@" + image + "\n",
	})
	if err != nil {
		return err
	}
	fmt.Printf("    git       %s at %s\n", git.RepoURL("platform"), commit)
	helm, err := testenv.StartHelmRepo(ctx, filepath.Join(dir, "upstream"))
	if err != nil {
		return err
	}
	defer helm.Stop()
	if _, err := helm.AddChart("demo", "0.1.0", map[string]string{
		"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
	}, nil); err != nil {
		return err
	}
	fmt.Printf("    helm      %s serves chart demo 0.1.0\n", helm.URL)

	step("a signing key and a spec")
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("demo"), nil })
	if err != nil {
		return err
	}
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(filepath.Join(work, "usb"), 0o755); err != nil {
		return err
	}
	spec := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: Mirror
bundle:
  expires: 720h
git:
  - name: platform
    url: %s
    ref: {branch: main}
    paths: [apps]
charts:
  - name: demo
    repository: %s
    version: ">=0.1.0"
images:
  - name: app
    image: %s/demo/app
    semver: ">=1.0.0"
    platforms: [linux/amd64]
`, git.RepoURL("platform"), helm.URL, reg.Host)
	for name, content := range map[string][]byte{"cosign.key": keys.PrivateBytes, "cosign.pub": keys.PublicBytes, "ferry.yaml": []byte(spec)} {
		if err := os.WriteFile(filepath.Join(work, name), content, 0o600); err != nil {
			return err
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(spec), "\n") {
		fmt.Println("    " + line)
	}

	step("mirror pack: resolve, copy byte for byte, sign, split into parts for the USB stick")
	env := []string{"COSIGN_PASSWORD=demo"}
	if _, err := ferry(work, env, "mirror", "pack", "-f", "ferry.yaml", "--key", "cosign.key", "--plain-http", reg.Host,
		"--out", "bundle", "--tar", "usb/bundle.tar", "--split", "4KiB"); err != nil {
		return err
	}

	step("across the gap: the upstreams go away; verify the parts offline with the public key")
	reg.Stop()
	git.Stop()
	helm.Stop()
	if _, err := ferry(work, nil, "mirror", "verify", "usb/bundle.tar.parts.json", "--key", "cosign.pub"); err != nil {
		return err
	}

	step("sync import: verify offline against the pinned key, copy into the cache, commit atomically")
	if _, err := ferry(work, nil, "sync", "import", "usb/bundle.tar.parts.json", "--key", "cosign.pub", "--cache", "cache"); err != nil {
		return err
	}
	if _, err := ferry(work, nil, "sync", "status", "--cache", "cache"); err != nil {
		return err
	}

	step("a damaged copy is refused, naming the part to copy again; the cache is untouched")
	parts, _ := filepath.Glob(filepath.Join(work, "usb", "bundle.tar.part-*"))
	data, err := os.ReadFile(parts[len(parts)/2])
	if err != nil {
		return err
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(parts[len(parts)/2], data, 0o644); err != nil {
		return err
	}
	if _, err := ferry(work, nil, "mirror", "verify", "usb/bundle.tar.parts.json", "--key", "cosign.pub"); err == nil {
		return fmt.Errorf("a damaged part was accepted")
	}
	if _, err := ferry(work, nil, "sync", "fsck", "--cache", "cache"); err != nil {
		return err
	}

	step("sync serve: the cache as a read-only OCI registry and Git remote for the cluster")
	if err := demoServe(ctx, work); err != nil {
		return err
	}

	step("starting the disconnected cluster (etcd + kube-apiserver)")
	cluster, err := testenv.StartCluster(ctx, filepath.Join(dir, "cluster"))
	if err != nil {
		return err
	}
	defer cluster.Stop()
	cs, err := cluster.Clientset()
	if err != nil {
		return err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	fmt.Printf("    api server https://%s (%s), kubeconfig %s\n", cluster.Host, v.GitVersion, cluster.Kubeconfig)

	step("sync reconcile: apply the Git source with kustomize and install the chart with Helm, from the cache")
	kubectl, err := testenv.ToolPath("kubectl")
	if err != nil {
		return err
	}
	if _, err := ferry(work, nil, "sync", "reconcile", "--cache", "cache", "--kubeconfig", cluster.Kubeconfig, "--install-crds"); err != nil {
		return err
	}
	objects := `apiVersion: ferry.dev/v1alpha1
kind: Kustomization
metadata: {name: platform, namespace: default}
spec: {interval: 1m, sourceRef: {kind: GitSource, name: platform}, path: apps, prune: true}
---
apiVersion: ferry.dev/v1alpha1
kind: HelmRelease
metadata: {name: demo, namespace: default}
spec: {interval: 1m, chart: {name: demo}, targetNamespace: default, dependsOn: [{name: platform, kind: Kustomization}]}
`
	if err := os.WriteFile(filepath.Join(work, "ferry-objects.yaml"), []byte(objects), 0o644); err != nil {
		return err
	}
	if err := show(work, kubectl, "--kubeconfig", cluster.Kubeconfig, "apply", "-f", "ferry-objects.yaml"); err != nil {
		return err
	}
	if _, err := ferry(work, nil, "sync", "reconcile", "--cache", "cache", "--kubeconfig", cluster.Kubeconfig); err != nil {
		return err
	}
	if err := show(work, kubectl, "--kubeconfig", cluster.Kubeconfig, "wait", "--for=condition=Ready", "kustomization/platform", "helmrelease/demo", "--timeout=30s"); err != nil {
		return err
	}
	if err := show(work, kubectl, "--kubeconfig", cluster.Kubeconfig, "get", "kustomizations,helmreleases,configmaps"); err != nil {
		return err
	}

	step("not yet implemented: the unattended agent (sync run) that does all of this on its own")
	fmt.Println("    it arrives with its own issue; this demo grows with it")

	step("stopping everything (%.1fs)", time.Since(start).Seconds())
	return nil
}

// demoServe starts `sync serve` on the cache, lists what it serves, clones the Git source from
// it, prints the containerd configuration that points nodes at it, and stops it.
func demoServe(ctx context.Context, work string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	bin, _ := filepath.Abs(filepath.Join("bin", "sync"))
	fmt.Printf("    $ sync serve --cache cache --listen %s &\n", addr)
	cmd := exec.CommandContext(ctx, bin, "serve", "--cache", "cache", "--listen", addr)
	cmd.Dir = work
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var catalog struct{ Repositories []string }
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/_catalog")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&catalog)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sync serve did not answer: %v", err)
		}
	}
	fmt.Printf("    GET http://%s/v2/_catalog\n", addr)
	for _, r := range catalog.Repositories {
		fmt.Println("      " + r)
	}
	fmt.Printf("    $ git clone http://%s/git/platform.git\n", addr)
	out, err := exec.CommandContext(ctx, "git", "clone", "--quiet", "http://"+addr+"/git/platform.git", filepath.Join(work, "platform")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("git clone: %v: %s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(work, "platform", "apps", "*"))
	for _, f := range files {
		fmt.Println("      " + filepath.Join("platform", "apps", filepath.Base(f)))
	}
	_, err = ferry(work, nil, "sync", "registry-config", "--cache", "cache", "--endpoint", "https://ferry.ferry-system.svc:5000")
	return err
}

// show runs a tool, echoing the command and indenting what it prints.
func show(dir, bin string, args ...string) error {
	fmt.Printf("    $ %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("      " + line)
	}
	return err
}

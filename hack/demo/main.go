// Command demo runs Ferry's flow on an embedded default, printing each step and the commands
// it runs. It starts the upstreams a platform team would have (a registry with a multi-platform
// image, a Git repository of manifests, a Helm repository), packs them with `mirror pack` into a
// signed bundle split into parts as if for a USB stick, together with the cluster's desired
// state (a Kustomization and a HelmRelease), and stops the upstreams. On the far side it starts
// a cluster and the agent, `sync run`, watching a drop directory: a damaged copy of the parts is
// rejected and reported, the good part is copied again, and the agent verifies, imports, serves
// and reconciles on its own. Run as root after `make tools`, the cluster is one real node and
// the repository also runs podinfo, whose image the node's containerd pulls through the agent's
// registry; podinfo answering on its Pod address ends the flow. Otherwise the cluster is etcd +
// kube-apiserver alone and the demo says why. It stops everything it started.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
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

	// With root and the node's tools (`make tools`), the far side is a real node and podinfo
	// runs on it, pulled through Ferry's registry; otherwise an API server alone, no Pods.
	nodeErr := testenv.NodeAvailable()
	if nodeErr != nil {
		fmt.Printf("no node for this demo (%v):\n    the cluster is etcd + kube-apiserver and no Pod runs; as root, 'make tools' then 'make demo' runs podinfo on a real node\n", nodeErr)
	}

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
	repo := map[string]string{
		"apps/kustomization.yaml": "resources:\n- configmap.yaml\n",
		"apps/configmap.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\ndata:\n  image: " + reg.Host + "/demo/app@" + image + "\n",
	}
	podinfoImages := ""
	if nodeErr == nil {
		podinfo, err := testenv.PushPodinfo(ctx, reg.Host+"/stefanprodan/podinfo:6.9.2", false)
		if err != nil {
			return err
		}
		fmt.Printf("    registry  %s/stefanprodan/podinfo:6.9.2 = %s\n", reg.Host, podinfo)
		repo["apps/kustomization.yaml"] = "resources:\n- configmap.yaml\n- podinfo.yaml\n"
		repo["apps/podinfo.yaml"] = fmt.Sprintf(podinfoDeployment, reg.Host)
		podinfoImages = fmt.Sprintf("  - name: podinfo\n    image: %s/stefanprodan/podinfo\n    tag: \"6.9.2\"\n", reg.Host)
	}
	git, err := testenv.StartGitServer(ctx, filepath.Join(dir, "upstream"))
	if err != nil {
		return err
	}
	defer git.Stop()
	commit, err := git.CreateRepo(ctx, "platform", repo)
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
%scluster:
  path: cluster                  # the cluster's desired state, signed with the rest
`, git.RepoURL("platform"), helm.URL, reg.Host, podinfoImages)
	for name, content := range map[string][]byte{"cosign.key": keys.PrivateBytes, "cosign.pub": keys.PublicBytes, "ferry.yaml": []byte(spec)} {
		if err := os.WriteFile(filepath.Join(work, name), content, 0o600); err != nil {
			return err
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(spec), "\n") {
		fmt.Println("    " + line)
	}
	if err := os.MkdirAll(filepath.Join(work, "cluster"), 0o755); err != nil {
		return err
	}
	objects := clusterObjects(git.RepoURL("platform"), helm.URL)
	if err := os.WriteFile(filepath.Join(work, "cluster", "platform.yaml"), []byte(objects), 0o644); err != nil {
		return err
	}
	fmt.Println("    cluster/platform.yaml:")
	for _, line := range strings.Split(strings.TrimSpace(objects), "\n") {
		fmt.Println("      " + line)
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

	step("a damaged copy: one byte flipped in one part, as a bad USB stick would")
	drop := filepath.Join(work, "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		return err
	}
	parts, _ := filepath.Glob(filepath.Join(work, "usb", "bundle.tar.part-*"))
	damaged := parts[len(parts)/2]
	for _, p := range append(parts, filepath.Join(work, "usb", "bundle.tar.parts.json")) {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if p == damaged {
			data[len(data)/2] ^= 0xff
		}
		if err := os.WriteFile(filepath.Join(drop, filepath.Base(p)), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("    copied %d parts and the part list into drop/, %s damaged\n", len(parts), filepath.Base(damaged))

	var cluster *testenv.Cluster
	var node *testenv.Node
	if nodeErr == nil {
		step("starting the disconnected cluster: one node (etcd, kube-apiserver, controllers, containerd, kubelet, kube-proxy)")
		if node, err = testenv.StartNode(ctx, filepath.Join(dir, "cluster")); err != nil {
			return err
		}
		defer node.Stop()
		cluster = node.Cluster
		fmt.Printf("    node %s Ready at %s, pods on %s\n", node.Name, node.IP, node.PodRange)
	} else {
		step("starting the disconnected cluster (etcd + kube-apiserver)")
		if cluster, err = testenv.StartCluster(ctx, filepath.Join(dir, "cluster")); err != nil {
			return err
		}
		defer cluster.Stop()
	}
	cs, err := cluster.Clientset()
	if err != nil {
		return err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	fmt.Printf("    api server https://%s (%s), kubeconfig %s\n", cluster.Host, v.GitVersion, cluster.Kubeconfig)

	serveAddr, healthAddr := freeAddr(), freeAddr()
	if node != nil {
		step("pointing the node's containerd at the agent's registry (what 'sync registry-config' prints for this bundle)")
		if _, err := ferry(work, nil, "sync", "import", "--cache", "node-setup", "--key", "cosign.pub", "usb/bundle.tar.parts.json"); err != nil {
			return err
		}
		out, err := ferry(work, nil, "sync", "registry-config", "--cache", "node-setup", "--endpoint", "http://"+serveAddr)
		if err != nil {
			return err
		}
		hosts, err := node.WriteRegistryConfig(out)
		if err != nil {
			return err
		}
		fmt.Printf("    wrote %s for %s\n", filepath.Join(node.HostsDir, "<host>", "hosts.toml"), strings.Join(hosts, ", "))
	}

	step("sync run: the unattended agent, watching drop/; nothing upstream is reachable")
	config := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: cache
keys: [{path: cosign.pub}]
sources: [{dir: drop}]
intervals: {poll: 1s, reconcile: 5s, retryMin: 1s, retryMax: 5s}
serve: {listen: "%s"}
health: {listen: "%s"}
kubeconfig: %s
installCRDs: true
`, serveAddr, healthAddr, cluster.Kubeconfig)
	if err := os.WriteFile(filepath.Join(work, "sync.yaml"), []byte(config), 0o644); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(config), "\n") {
		fmt.Println("    " + line)
	}
	agent, err := startAgent(ctx, work, "run", "--config", "sync.yaml")
	if err != nil {
		return err
	}
	defer agent.stop()
	health := "http://" + healthAddr

	step("the damaged bundle is rejected, reported, and left where it was")
	if err := agent.waitMetric(health, "ferry_bundles_rejected_total", 60*time.Second); err != nil {
		return err
	}
	agent.printLog("bundle rejected")
	kubectl, err := testenv.ToolPath("kubectl")
	if err != nil {
		return err
	}
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	// Events are sent in the background: wait for this one to land.
	if err := waitFor(30*time.Second, func() bool {
		out, _ := exec.Command(kubectl, append(kube, "get", "events.events.k8s.io", "-n", "ferry-system", "-o", "jsonpath={.items[*].reason}")...).Output()
		return strings.Contains(string(out), "BundleRejected")
	}); err != nil {
		return fmt.Errorf("no BundleRejected Event: %w; log %s", err, agent.logPath)
	}
	if err := show(work, kubectl, append(kube, "get", "events.events.k8s.io", "-n", "ferry-system", "-o", "custom-columns=REASON:.reason,NOTE:.note")...); err != nil {
		return err
	}

	step("copy the damaged part again, as the rejection says: the agent verifies, imports, serves and reconciles")
	if err := copyFile(damaged, filepath.Join(drop, filepath.Base(damaged))); err != nil {
		return err
	}
	if err := agent.waitMetric(health, "ferry_current_bundle_sequence", 60*time.Second); err != nil {
		return err
	}
	// The bundle's own objects (the sources, the Kustomization, the HelmRelease) are applied first.
	if err := waitFor(60*time.Second, func() bool {
		return exec.Command(kubectl, append(kube, "get", "kustomization/platform", "helmrelease/demo")...).Run() == nil
	}); err != nil {
		return fmt.Errorf("the bundle's Kustomization and HelmRelease were not applied: %w; log %s", err, agent.logPath)
	}
	if err := show(work, kubectl, append(kube, "wait", "--for=condition=Ready", "gitrepository/platform", "helmrepository/demo", "kustomization/platform", "helmrelease/demo", "--timeout=60s")...); err != nil {
		return err
	}
	agent.printLog("")
	if err := show(work, kubectl, append(kube, "get", "gitrepositories,helmrepositories,kustomizations,helmreleases,configmaps")...); err != nil {
		return err
	}
	if _, err := ferry(work, nil, "sync", "status", "--cache", "cache"); err != nil {
		return err
	}

	step("what the agent serves to the cluster: an OCI registry and a Git remote, from the cache")
	if err := demoServe(ctx, work, serveAddr); err != nil {
		return err
	}

	step("drift: a hand edit of an applied object is put back within the Kustomization's interval")
	if err := show(work, kubectl, append(kube, "patch", "configmap", "demo", "--type=merge", "-p", `{"data":{"image":"edited-by-hand"}}`)...); err != nil {
		return err
	}
	if err := show(work, kubectl, append(kube, "wait", "configmap/demo", "--for=jsonpath={.data.image}="+reg.Host+"/demo/app@"+image, "--timeout=60s")...); err != nil {
		return err
	}

	if node != nil {
		step("podinfo runs on the node, its image pulled through the agent's registry")
		if err := show(work, kubectl, append(kube, "rollout", "status", "deployment/podinfo", "--timeout=120s")...); err != nil {
			return err
		}
		if err := demoPodinfo(kubectl, kube); err != nil {
			return err
		}
		agent.printLog("/stefanprodan/podinfo/manifests/")
	}

	step("the agent's metrics (/metrics on %s)", healthAddr)
	if err := agent.printMetrics(health, "ferry_bundles_", "ferry_current_bundle_sequence", "ferry_drift_corrections_total", "ferry_reconcile_total"); err != nil {
		return err
	}

	step("stopping everything (%.1fs)", time.Since(start).Seconds())
	return agent.stop()
}

// clusterObjects is the desired state the bundle carries, in Flux's own kinds: the
// GitRepository and HelmRepository name the upstreams mirror fetched (gitURL, helmURL), which
// sync resolves to the bundle's items without dialling them; the Kustomization applies the Git
// source's apps folder and the HelmRelease installs the chart.
func clusterObjects(gitURL, helmURL string) string {
	return fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform, namespace: default}
spec: {interval: 5m, url: %s, ref: {branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: platform, namespace: default}
spec: {interval: 5s, sourceRef: {kind: GitRepository, name: platform}, path: apps, prune: true}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: demo, namespace: default}
spec: {interval: 5m, url: %s}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: demo, namespace: default}
spec:
  interval: 1m
  chart: {spec: {chart: demo, version: ">=0.1.0", sourceRef: {kind: HelmRepository, name: demo}}}
  targetNamespace: default
`, gitURL, helmURL)
}

// podinfoDeployment runs podinfo from the upstream registry's name (%[1]s); the node's
// containerd pulls it through the agent's registry.
const podinfoDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: default}
spec:
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
        - name: podinfo
          image: %[1]s/stefanprodan/podinfo:6.9.2
          command: [./podinfo, --port=9898]
          ports: [{containerPort: 9898}]
          readinessProbe: {httpGet: {path: /readyz, port: 9898}, periodSeconds: 2}
`

// demoPodinfo asks the podinfo Pod for its greeting on its Pod address.
func demoPodinfo(kubectl string, kube []string) error {
	out, err := exec.Command(kubectl, append(kube, "get", "pods", "-l", "app=podinfo", "-o", "jsonpath={.items[0].status.podIP}")...).Output()
	if err != nil {
		return fmt.Errorf("podinfo's Pod address: %w", err)
	}
	url := "http://" + strings.TrimSpace(string(out)) + ":9898/"
	fmt.Printf("    GET %s\n", url)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("podinfo: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("podinfo answered %s: %v", resp.Status, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		fmt.Println("      " + line)
	}
	return nil
}

// demoServe lists what the agent serves at addr, clones the Git source from it and prints the
// containerd configuration that points nodes at it.
func demoServe(ctx context.Context, work, addr string) error {
	var catalog struct{ Repositories []string }
	resp, err := http.Get("http://" + addr + "/v2/_catalog")
	if err != nil {
		return err
	}
	err = json.NewDecoder(resp.Body).Decode(&catalog)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
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

// agentProcess is `sync run` in the background, its JSON log in a file.
type agentProcess struct {
	cmd     *exec.Cmd
	logPath string
	printed int // log lines already printed
	done    chan error
}

func startAgent(ctx context.Context, work string, args ...string) (*agentProcess, error) {
	bin, _ := filepath.Abs(filepath.Join("bin", "sync"))
	fmt.Printf("    $ sync %s &\n", strings.Join(args, " "))
	logPath := filepath.Join(work, "agent.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=ferry-system")
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	a := &agentProcess{cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() { a.done <- cmd.Wait(); log.Close() }()
	return a, nil
}

// stop sends SIGTERM and waits for the agent to exit.
func (a *agentProcess) stop() error {
	if a.cmd.ProcessState != nil {
		return nil
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-a.done:
		a.cmd.ProcessState = &os.ProcessState{}
		if err != nil {
			return fmt.Errorf("sync run: %v; log %s", err, a.logPath)
		}
		fmt.Println("    sync run stopped cleanly")
		return nil
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		return fmt.Errorf("sync run did not stop within 20s; log %s", a.logPath)
	}
}

// waitMetric waits until the agent's /metrics shows sample above zero.
func (a *agentProcess) waitMetric(health, sample string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if v, _ := metricValue(health, sample); v > 0 {
			return nil
		}
		select {
		case err := <-a.done:
			return fmt.Errorf("sync run exited (%v); log %s", err, a.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not above 0 after %s; log %s", sample, timeout, a.logPath)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// printLog prints the agent's new log lines (only those whose message or request path contains
// filter, when set) as "agent: message key=value …".
func (a *agentProcess) printLog(filter string) {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, line := range lines[min(a.printed, len(lines)):] {
		var rec map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber() // sequences are large integers
		if dec.Decode(&rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		path, _ := rec["path"].(string) // an access-log line's request path
		if filter != "" && !strings.Contains(msg, filter) && !strings.Contains(path, filter) {
			continue
		}
		var kv []string
		for k, v := range rec {
			if k == "time" || k == "level" || k == "msg" {
				continue
			}
			kv = append(kv, fmt.Sprintf("%s=%v", k, v))
		}
		sort.Strings(kv)
		line := fmt.Sprintf("    agent: %s %s", msg, strings.Join(kv, " "))
		if len(line) > 240 {
			line = line[:239] + "…" // the whole line is in the agent's log
		}
		fmt.Println(line)
	}
	a.printed = len(lines)
}

// printMetrics prints the agent's metric samples whose names start with one of prefixes.
func (a *agentProcess) printMetrics(health string, prefixes ...string) error {
	resp, err := http.Get(health + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) && !strings.Contains(line, "_bucket{") {
				fmt.Println("    " + line)
				break
			}
		}
	}
	return nil
}

// metricValue returns the value of the first sample named sample (with any labels).
func metricValue(health, sample string) (float64, error) {
	resp, err := http.Get(health + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || (name != sample && !strings.HasPrefix(name, sample+"{")) {
			continue
		}
		return strconv.ParseFloat(strings.TrimSpace(value), 64)
	}
	return 0, nil
}

// waitFor polls cond every 250ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
	}
	return nil
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
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

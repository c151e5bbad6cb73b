package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// nodeWorld is what TestAgentPodOnNode works with: a node, the upstreams (stopped once the
// bundles are packed) and the folder the agent's cache volume is.
type nodeWorld struct {
	t       *testing.T
	dir     string
	node    *testenv.Node
	kube    []string
	volume  string // the hostPath behind the ferry-cache claim: /var/lib/ferry in the agent's Pod
	regHost string // the upstream registry, stopped after packing
	agents  map[string]string

	logMu sync.Mutex
	logs  map[string]string // the agent Pods' logs as last read, kept after the kubelet drops them
}

// keepAgentLogs reads the agent Pods' logs twice a second until the test ends, so that a Pod a
// rollout replaced still has its log (its registry's access log) to check.
func (w *nodeWorld) keepAgentLogs(ctx context.Context) {
	w.logs = map[string]string{}
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, pod := range w.node.LoggedPods("ferry-system") {
				if log, err := w.node.ContainerLog("ferry-system", pod, "sync"); err == nil {
					w.logMu.Lock()
					if len(log) >= len(w.logs[pod]) {
						w.logs[pod] = log
					}
					w.logMu.Unlock()
				}
			}
		}
	}()
}

// The agent's versions: v1 is installed, v2 arrives in a bundle, v0 is older than both.
const (
	nodeAgentV0 = "v0.89.0"
	nodeAgentV1 = "v0.90.0"
	nodeAgentV2 = "v0.91.0"
	// nodeRegistryPort is the NodePort the nodes' containerd reaches Ferry's registry on.
	nodeRegistryPort = "30500"
)

// TestAgentPodOnNode runs Ferry as a cluster runs it: `sync install`'s output applied as it is,
// the agent's first image loaded onto the node, and from then on everything through Ferry. The
// node's containerd pulls every image from the agent's registry (its hosts.toml files are what
// `sync registry-config` prints) with the upstream registry stopped; podinfo's chart and its
// kustomize folder run for real, Ready by their probes; the agent updates itself to an image a
// bundle carries, the new Pod pulling it from the old Pod's registry; a HelmRelease upgrade to
// a broken image is rolled back when its Pods never become ready; a deleted Deployment comes
// back; and a bundle carrying an older agent image is refused, the cluster unchanged.
func TestAgentPodOnNode(t *testing.T) {
	ctx := context.Background()
	node := testenv.NewNode(t)
	w := &nodeWorld{t: t, dir: t.TempDir(), node: node, kube: []string{"--kubeconfig", node.Kubeconfig}, agents: map[string]string{}}
	reg := testenv.NewRegistry(t)
	w.regHost = reg.Host
	logCtx, stopLogs := context.WithCancel(ctx)
	t.Cleanup(stopLogs)
	w.keepAgentLogs(logCtx)
	gitSrv := testenv.NewGitServer(t)
	helm := testenv.NewHelmRepo(t)

	// Upstream content: three agent images, podinfo and a broken podinfo, podinfo's chart, and
	// the platform repository holding the agent's own manifests and podinfo's kustomize folder.
	for _, v := range []string{nodeAgentV0, nodeAgentV1, nodeAgentV2} {
		w.agents[v] = w.agentImage(v)
	}
	podinfo, err := testenv.PushPodinfo(ctx, reg.Host+"/stefanprodan/podinfo:6.9.2", false)
	if err != nil {
		t.Fatal(err)
	}
	broken, err := testenv.PushPodinfo(ctx, reg.Host+"/stefanprodan/podinfo:6.9.3", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upstream %s: agents %v, podinfo %s, broken podinfo %s", reg.Host, w.agents, podinfo, broken)
	chartDir, err := testenv.PodinfoChart()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := helm.AddChartDir(chartDir, ""); err != nil {
		t.Fatal(err)
	}
	pw := []string{"COSIGN_PASSWORD=ferry"}
	must(t, w.dir, pw, "cosign", "generate-key-pair", "--output-key-prefix", "mirror")
	install := w.installManifests()
	files := map[string]string{
		"clusters/node/ferry-system/kustomization.yaml": "resources: [install.yaml]\n",
		"clusters/node/ferry-system/install.yaml":       install,
	}
	kustomizeDir, err := testenv.PodinfoKustomize()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kustomization.yaml", "deployment.yaml", "service.yaml", "hpa.yaml"} {
		b, err := os.ReadFile(filepath.Join(kustomizeDir, f))
		if err != nil {
			t.Fatal(err)
		}
		files["apps/podinfo/"+f] = string(b)
	}
	if _, err := gitSrv.CreateRepo(ctx, "platform", files); err != nil {
		t.Fatal(err)
	}

	// Four bundles, packed while the upstreams answer.
	gitURL := gitSrv.RepoURL("platform")
	b1, root1 := w.pack(1, "", gitURL, helm.URL, nodeAgentV1, "6.9.2")
	b2, root2 := w.pack(2, root1, gitURL, helm.URL, nodeAgentV2, "6.9.2")
	b3, root3 := w.pack(3, root2, gitURL, helm.URL, nodeAgentV2, "6.9.3")
	b4, _ := w.pack(4, root3, gitURL, helm.URL, nodeAgentV0, "6.9.2")
	w.writeHostsTOML(b1)
	gitSrv.Stop()
	helm.Stop()
	if err := reg.Stop(); err != nil {
		t.Fatal(err)
	}

	// Bootstrap: the first image onto the node, the cache's volume, then `sync install` as is.
	if err := node.ImportLayout(ctx, filepath.Join(w.dir, "agent-"+nodeAgentV1, "layout")); err != nil {
		t.Fatal(err)
	}
	w.cacheVolume()
	if err := os.WriteFile(filepath.Join(w.dir, "install.yaml"), []byte(install), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, w.dir, nil, "kubectl", append(w.kube, "apply", "--server-side", "-f", "install.yaml")...)
	// An agent with an empty cache is not Ready (the leader has nothing to reconcile yet), so
	// the first Pod is waited for Running, its /healthz answering on its Pod address.
	w.waitFor(3*time.Minute, "the first agent Pod running", func() bool {
		p := w.agentPod()
		return p.running && p.ip != "" && w.healthy(p)
	})
	first := w.agentPod()
	t.Logf("the first agent %s runs %s (loaded onto the node)", first.name, first.image)

	// Bundle 1: the agent applies its own manifests pinned to the carried image by digest, so
	// the Deployment rolls to it, pulled from the running agent's registry.
	w.drop(b1)
	w.waitFor(3*time.Minute, "the agent to run its carried v1 image", func() bool {
		p := w.agentPod()
		return p.ready && p.image == reg.Host+"/ferry/sync@"+w.agents[nodeAgentV1]
	})
	v1 := w.agentPod()
	w.waitKustomizationReady("ferry-system", "ferry-sync")
	w.waitFor(3*time.Minute, "podinfo's HelmRelease Ready", func() bool { return w.ready(nodeHelmReleases, "podinfo", "podinfo") })
	w.waitFor(2*time.Minute, "podinfo's Kustomization Ready (healthChecks)", func() bool { return w.ready(nodeKustomizations, "ferry-system", "podinfo-kustomize") })
	for _, ns := range []string{"podinfo", "podinfo-kustomize"} {
		w.waitRollout(ns, "podinfo", time.Minute)
	}
	// The first agent served the v1 image's rollout (a HEAD: the layout it was loaded from
	// already holds that digest); podinfo was pulled from whichever agent ran then.
	if log := w.accessLog(first.name); !w.served(log, "/ferry/sync/manifests/"+w.agents[nodeAgentV1]) {
		t.Fatalf("the first agent's access log shows no containerd pull of the v1 image:\n%s", log)
	}
	if log := w.allLogs(); !w.served(log, "/stefanprodan/podinfo/manifests/6.9.2") {
		t.Fatalf("no agent's access log shows a containerd pull of podinfo 6.9.2:\n%s", log)
	}

	// A deleted Deployment is drift: the Kustomization puts it back and its Pods come back.
	must(t, w.dir, nil, "kubectl", append(w.kube, "delete", "deployment", "podinfo", "-n", "podinfo-kustomize", "--wait=false")...)
	w.waitFor(time.Minute, "the deleted podinfo Deployment back", func() bool {
		return run(t, w.dir, nil, "kubectl", append(w.kube, "get", "deployment", "podinfo", "-n", "podinfo-kustomize")...).Err == nil
	})
	w.waitRollout("podinfo-kustomize", "podinfo", 2*time.Minute)

	// Bundle 2: a new agent image. The Deployment rolls; the new Pod pulls v2 from v1's registry.
	w.drop(b2)
	w.waitFor(3*time.Minute, "the agent to roll to v2", func() bool {
		p := w.agentPod()
		return p.ready && p.image == reg.Host+"/ferry/sync@"+w.agents[nodeAgentV2] && p.name != v1.name
	})
	v2 := w.agentPod()
	if log := w.accessLog(v1.name); !w.served(log, "/ferry/sync/manifests/"+w.agents[nodeAgentV2]) {
		t.Fatalf("the v1 agent's access log shows no containerd pull of the v2 image:\n%s", log)
	}
	w.waitKustomizationReady("ferry-system", "ferry-sync")
	t.Logf("self-update: %s (v1) replaced by %s running %s", v1.name, v2.name, v2.image)

	// Bundle 3: podinfo's chart upgraded to a broken image; its Pods never become ready, the
	// upgrade fails its wait and (upgrade.remediation.remediateLastFailure) is rolled back to
	// the release that worked: the newest history entry is that rollback, deployed.
	w.drop(b3)
	w.waitFor(4*time.Minute, "the broken upgrade rolled back", func() bool {
		hr := w.helmRelease()
		return len(hr.Status.History) > 0 && hr.Status.History[0].Action == "rollback" && hr.Status.History[0].Status == "deployed"
	})
	hr := w.helmRelease()
	t.Logf("podinfo's HelmRelease after the broken upgrade: %+v", hr.Status)
	w.waitRollout("podinfo", "podinfo", 2*time.Minute)
	if img := strings.TrimSpace(must(t, w.dir, nil, "kubectl", append(w.kube, "get", "deployment", "podinfo", "-n", "podinfo", "-o", "jsonpath={.spec.template.spec.containers[0].image}")...)); !strings.HasSuffix(img, ":6.9.2") {
		t.Fatalf("after the rollback podinfo runs %s, want the 6.9.2 image", img)
	}

	// Bundle 4: an older agent image. Refused; the agent and the cluster stay as they are.
	w.drop(b4)
	w.waitFor(2*time.Minute, "the bundle with the older agent refused", func() bool {
		return strings.Contains(w.metric(v2, `ferry_bundles_rejected_total{check="agent-rollback"}`), "1")
	})
	time.Sleep(10 * time.Second) // two reconcile intervals
	if p := w.agentPod(); p.name != v2.name || p.image != v2.image || !p.ready {
		t.Fatalf("after the refused bundle the agent is %+v, want %+v", p, v2)
	}
	if seq := w.metric(v2, "ferry_current_bundle_sequence"); seq != "3" {
		t.Fatalf("after the refused bundle the current sequence is %q, want 3", seq)
	}
}

// agentImage builds the sync binary at version for this machine, wraps it with hack/image into
// an OCI layout (named as `sync install` runs it, for loading onto the node) and pushes it
// upstream; it returns the image's digest.
func (w *nodeWorld) agentImage(version string) string {
	t := w.t
	dir := filepath.Join(w.dir, "agent-"+version)
	static := filepath.Join(dir, "sync")
	agentImageGoBuild(t, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH},
		"-trimpath", "-ldflags", "-s -w -X github.com/ferry-gitops/ferry/internal/buildinfo.Version="+version, "-o", static, "../cmd/sync")
	imageTool := filepath.Join(w.dir, "image-tool")
	if _, err := os.Stat(imageTool); err != nil {
		agentImageGoBuild(t, nil, "-o", imageTool, "../hack/image")
	}
	digest := strings.TrimSpace(must(t, dir, []string{"SOURCE_DATE_EPOCH=1767225600"}, imageTool, "--binary", static, "--version", version,
		"--revision", "e2e", "--layout", filepath.Join(dir, "layout"), "--push", w.regHost+"/ferry/sync:"+version, "--plain-http"))
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("hack/image printed %q", digest)
	}
	return digest
}

// agentConfig is the agent's configuration in its Pod: the cache and drop folder on its volume.
const agentConfig = `apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: /var/lib/ferry/cache
keys: [{path: /etc/ferry/keys/mirror.pub}]
sources: [{dir: /var/lib/ferry/drop}]
intervals: {poll: 1s, reconcile: 5s, retryMin: 1s, retryMax: 5s}
serve: {listen: ":5000"}
health: {listen: ":8080"}
installCRDs: true
leaderElection: {enabled: true, namespace: ferry-system, name: ferry-sync}
`

// installManifests renders `sync install` for the first agent image, the registry on a NodePort.
func (w *nodeWorld) installManifests() string {
	if err := os.WriteFile(filepath.Join(w.dir, "config.yaml"), []byte(agentConfig), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return must(w.t, w.dir, nil, "sync", "install", "--config", "config.yaml", "--key", "mirror.pub", "--crds",
		"--image", "ferry.local/ferry/sync:"+nodeAgentV1, "--registry-node-port", nodeRegistryPort)
}

// clusterItem is the bundle's cluster folder: the Flux sources, named by the URLs ferry.yaml
// lists (gitURL, helmURL), the Kustomization that keeps the agent's own objects, pinned to the
// carried agent image, and podinfo twice (chart and kustomize folder).
func (w *nodeWorld) clusterItem(gitURL, helmURL, agentVersion, podinfoTag string) string {
	return fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform, namespace: ferry-system}
spec: {url: %[4]s, ref: {branch: main}, interval: 1m}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: ferry-sync, namespace: ferry-system}
spec:
  sourceRef: {kind: GitRepository, name: platform}
  path: clusters/node/ferry-system
  interval: 5s
  prune: false
  wait: true
  timeout: 3m
  images:
    - {name: ferry.local/ferry/sync, newName: %[1]s/ferry/sync, digest: "%[2]s"}
---
apiVersion: v1
kind: Namespace
metadata: {name: podinfo}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: podinfo}
spec: {url: %[5]s, interval: 1m}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: podinfo}
spec:
  chart: {spec: {chart: podinfo, version: "6.9.2", sourceRef: {kind: HelmRepository, name: podinfo}}}
  interval: 5s
  timeout: 60s
  upgrade: {remediation: {remediateLastFailure: true}}
  values:
    image: {repository: %[1]s/stefanprodan/podinfo, tag: "%[3]s"}
    probes:
      readiness: {periodSeconds: 2}
---
apiVersion: v1
kind: Namespace
metadata: {name: podinfo-kustomize}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: podinfo-kustomize, namespace: ferry-system}
spec:
  sourceRef: {kind: GitRepository, name: platform}
  path: apps/podinfo
  targetNamespace: podinfo-kustomize
  interval: 5s
  prune: true
  timeout: 2m
  images:
    - {name: ghcr.io/stefanprodan/podinfo, newName: %[1]s/stefanprodan/podinfo, newTag: "6.9.2"}
  healthChecks:
    - {apiVersion: apps/v1, kind: Deployment, name: podinfo, namespace: podinfo-kustomize}
`, w.regHost, w.agents[agentVersion], podinfoTag, gitURL, helmURL)
}

// pack packs bundle seq after the bundle whose root is previous: the platform repository,
// podinfo's chart, the agent image at agentVersion, podinfo at podinfoTag (and 6.9.2, which the
// kustomize folder runs) and the cluster folder. It returns the tar's path and the root.
func (w *nodeWorld) pack(seq int, previous, gitURL, helmURL, agentVersion, podinfoTag string) (string, string) {
	t := w.t
	dir := filepath.Join(w.dir, fmt.Sprintf("spec-%d", seq))
	if err := os.MkdirAll(filepath.Join(dir, "cluster"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster", "objects.yaml"), []byte(w.clusterItem(gitURL, helmURL, agentVersion, podinfoTag)), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: Mirror
git:
  - {name: platform, url: %s, ref: {branch: main}}
charts:
  - {name: podinfo, repository: %s, version: "6.9.2"}
images:
`, gitURL, helmURL)
	spec += fmt.Sprintf("  - {name: ferry-sync, image: %s/ferry/sync, digest: \"%s\", signatures: false}\n", w.regHost, w.agents[agentVersion])
	spec += fmt.Sprintf("  - {name: podinfo-image, image: %s/stefanprodan/podinfo, tag: \"6.9.2\", signatures: false}\n", w.regHost)
	if podinfoTag != "6.9.2" {
		spec += fmt.Sprintf("  - {name: podinfo-image-next, image: %s/stefanprodan/podinfo, tag: %q, signatures: false}\n", w.regHost, podinfoTag)
	}
	spec += "cluster: {path: ./cluster}\n"
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(w.dir, fmt.Sprintf("b%d.tar", seq))
	args := []string{"pack", "-f", "ferry.yaml", "--key", filepath.Join(w.dir, "mirror.key"), "--sequence", fmt.Sprint(seq),
		"--plain-http", w.regHost, "--out", "bundle", "--tar", out}
	if previous != "" {
		args = append(args, "--previous", previous)
	}
	must(t, dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", args...)
	copyFile(t, filepath.Join(w.dir, "mirror.pub"), filepath.Join(dir, "mirror.pub"))
	return out, verifyBundle(t, dir, nil, "bundle").Root
}

// writeHostsTOML imports bundle b into a scratch cache and writes exactly what `sync
// registry-config` prints for the node's registry endpoint into the node's containerd hosts
// folder.
func (w *nodeWorld) writeHostsTOML(b string) {
	t := w.t
	scratch := filepath.Join(w.dir, "scratch-cache")
	must(t, w.dir, nil, "sync", "import", "--cache", scratch, "--key", "mirror.pub", b)
	out := must(t, w.dir, nil, "sync", "registry-config", "--cache", scratch, "--endpoint", "http://"+w.node.IP+":"+nodeRegistryPort)
	if _, err := w.node.WriteRegistryConfig(out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.node.HostsDir, w.regHost, "hosts.toml")); err != nil {
		t.Fatalf("sync registry-config printed no hosts.toml for %s:\n%s", w.regHost, out)
	}
}

// cacheVolume makes the PersistentVolume the ferry-cache claim binds to: a folder of the test
// owned by the agent's user.
func (w *nodeWorld) cacheVolume() {
	t := w.t
	w.volume = filepath.Join(w.dir, "volume")
	for _, d := range []string{w.volume, filepath.Join(w.volume, "drop")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}
	pv := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: ferry-cache}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: ferry-system, name: ferry-cache}
  hostPath: {path: %s, type: Directory}
`, w.volume)
	if err := os.WriteFile(filepath.Join(w.dir, "pv.yaml"), []byte(pv), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, w.dir, nil, "kubectl", append(w.kube, "apply", "-f", "pv.yaml")...)
}

// drop delivers a bundle to the agent's drop folder: written under another name, then renamed.
func (w *nodeWorld) drop(b string) {
	t := w.t
	tmp := filepath.Join(w.volume, "drop", "."+filepath.Base(b)+".partial")
	copyFile(t, b, tmp)
	if err := os.Chown(tmp, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.volume, "drop", filepath.Base(b))); err != nil {
		t.Fatal(err)
	}
}

type agentPodState struct {
	name, image, ip string
	running, ready  bool
}

// agentPod is the agent's newest running Pod.
func (w *nodeWorld) agentPod() agentPodState {
	r := run(w.t, w.dir, nil, "kubectl", append(w.kube, "get", "pods", "-n", "ferry-system", "-l", "app.kubernetes.io/name=ferry-sync", "-o", "json")...)
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string    `json:"name"`
				CreationTimestamp time.Time `json:"creationTimestamp"`
				DeletionTimestamp *string   `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				Containers []struct {
					Image string `json:"image"`
				} `json:"containers"`
			} `json:"spec"`
			Status struct {
				Phase      string `json:"phase"`
				PodIP      string `json:"podIP"`
				Conditions []struct {
					Type, Status string
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	var best agentPodState
	var newest time.Time
	if r.Err != nil || json.Unmarshal([]byte(r.Stdout), &list) != nil {
		return best
	}
	for _, p := range list.Items {
		if p.Metadata.DeletionTimestamp != nil || !p.Metadata.CreationTimestamp.After(newest) && best.name != "" {
			continue
		}
		newest = p.Metadata.CreationTimestamp
		best = agentPodState{name: p.Metadata.Name, ip: p.Status.PodIP, running: p.Status.Phase == "Running"}
		if len(p.Spec.Containers) > 0 {
			best.image = p.Spec.Containers[0].Image
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				best.ready = true
			}
		}
	}
	return best
}

// accessLog is what the agent Pod printed (its JSON log lines, the registry's access log among
// them), as keepAgentLogs last read it.
func (w *nodeWorld) accessLog(pod string) string {
	now, err := w.node.ContainerLog("ferry-system", pod, "sync")
	w.logMu.Lock()
	defer w.logMu.Unlock()
	kept, ok := w.logs[pod]
	if err != nil && !ok {
		w.t.Fatalf("no log of agent Pod %s was ever read: %v", pod, err)
	}
	if len(now) > len(kept) { // a Pod being removed may have lost its log file already
		return now
	}
	return kept
}

// allLogs is every agent Pod's log as keepAgentLogs last read it, one after another.
func (w *nodeWorld) allLogs() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	var b strings.Builder
	for _, log := range w.logs {
		b.WriteString(log)
	}
	return b.String()
}

// served says whether the log holds a request with status 200 whose path ends in suffix.
func (w *nodeWorld) served(log, suffix string) bool {
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, "{")
		if i < 0 {
			continue
		}
		var rec struct {
			Msg    string `json:"msg"`
			Method string `json:"method"`
			Path   string `json:"path"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line[i:]), &rec) != nil || rec.Msg != "request" {
			continue
		}
		if rec.Status == 200 && strings.HasSuffix(rec.Path, suffix) {
			return true
		}
	}
	return false
}

// metric reads a sample from the agent Pod's /metrics, on its Pod address.
func (w *nodeWorld) metric(p agentPodState, sample string) string {
	return metric(w.t, "http://"+p.ip+":8080", sample)
}

// healthy says whether the agent Pod's /healthz answers 200.
func (w *nodeWorld) healthy(p agentPodState) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.ip + ":8080/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// The Flux kinds sync reconciles, as kubectl names their resources.
const (
	nodeKustomizations = "kustomizations.kustomize.toolkit.fluxcd.io"
	nodeHelmReleases   = "helmreleases.helm.toolkit.fluxcd.io"
	nodeFluxResources  = nodeKustomizations + "," + nodeHelmReleases + ",gitrepositories.source.toolkit.fluxcd.io,helmrepositories.source.toolkit.fluxcd.io"
)

// ready says whether the object of resource (one of the Flux kinds) is Ready.
func (w *nodeWorld) ready(resource, namespace, name string) bool {
	r := run(w.t, w.dir, nil, "kubectl", append(w.kube, "get", resource, name, "-n", namespace, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)...)
	return r.Err == nil && strings.TrimSpace(r.Stdout) == "True"
}

func (w *nodeWorld) waitKustomizationReady(namespace, name string) {
	w.waitFor(3*time.Minute, "Kustomization "+namespace+"/"+name+" Ready", func() bool { return w.ready(nodeKustomizations, namespace, name) })
}

type nodeHelmRelease struct {
	Status struct {
		Conditions []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
		UpgradeFailures int `json:"upgradeFailures"`
		History         []struct {
			Version      int    `json:"version"`
			ChartVersion string `json:"chartVersion"`
			Status       string `json:"status"`
			Action       string `json:"action"`
		} `json:"history"`
	} `json:"status"`
}

func (w *nodeWorld) helmRelease() nodeHelmRelease {
	var hr nodeHelmRelease
	r := run(w.t, w.dir, nil, "kubectl", append(w.kube, "get", nodeHelmReleases, "podinfo", "-n", "podinfo", "-o", "json")...)
	if r.Err == nil {
		_ = json.Unmarshal([]byte(r.Stdout), &hr)
	}
	return hr
}

// waitRollout waits for a Deployment's rollout to finish.
func (w *nodeWorld) waitRollout(namespace, name string, timeout time.Duration) {
	w.t.Helper()
	must(w.t, w.dir, nil, "kubectl", append(w.kube, "rollout", "status", "deployment/"+name, "-n", namespace, "--timeout", timeout.String())...)
}

// waitFor polls cond every second until it holds, failing the test with the cluster's state
// after timeout.
func (w *nodeWorld) waitFor(timeout time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			state := run(w.t, w.dir, nil, "kubectl", append(w.kube, "get", "pods,deployments,"+nodeFluxResources+",events", "-A", "-o", "wide")...)
			agent := w.agentPod()
			log, _ := w.node.ContainerLog("ferry-system", agent.name, "sync")
			if len(log) > 8000 {
				log = log[len(log)-8000:]
			}
			w.t.Fatalf("waited %s for %s\ncluster:\n%s%s\nagent %s log (tail):\n%s", timeout, what, state.Stdout, state.Stderr, agent.name, log)
		}
		time.Sleep(time.Second)
	}
}

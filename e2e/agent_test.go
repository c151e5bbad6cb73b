package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/reconcile"
)

// agentWorld is what the agent tests share: three signed bundles packed while the upstreams
// were up (1: the first state; 2: the next one, chained to 1; old: sequence 1 again, packed
// later, so it is a rollback once 2 is in), and the expected revisions.
type agentWorld struct {
	dir              string
	commit1, commit2 string
	bundle1, bundle2 string // tar part lists (bundle1) and tar files (bundle2, old) under dir
	old              string
	chart1, chart2   string
	// gitURL and helmURL are the upstreams as ferry.yaml lists them, which the cluster's Flux
	// sources name (sync resolves them to the bundle's items; the upstreams are stopped).
	gitURL, helmURL string
}

// packAgentWorld starts the upstreams, packs the three bundles and stops the upstreams.
func packAgentWorld(t *testing.T) *agentWorld {
	t.Helper()
	ctx := context.Background()
	w := &agentWorld{dir: t.TempDir(), chart1: "1.0.0", chart2: "1.1.0"}
	gitSrv := testenv.NewGitServer(t)
	helm := testenv.NewHelmRepo(t)
	var err error
	files := func(hello string) map[string]string {
		return map[string]string{
			"apps/kustomization.yaml": "resources:\n- namespace.yaml\n- configmap.yaml\n",
			"apps/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
			"apps/configmap.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: demo\ndata:\n  hello: " + hello + "\n",
		}
	}
	if w.commit1, err = gitSrv.CreateRepo(ctx, "platform", files("world")); err != nil {
		t.Fatal(err)
	}
	tpl := map[string]string{"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  chart: {{ .Chart.Version }}\n"}
	if _, err := helm.AddChart("podinfo", w.chart1, tpl, nil); err != nil {
		t.Fatal(err)
	}
	spec := func(expires string) string {
		return fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\nbundle:\n  expires: %s\ngit:\n  - name: platform\n    url: %s\n    ref: {branch: main}\n"+
			"charts:\n  - name: podinfo\n    repository: %s\n    version: \">=1.0.0\"\n", expires, gitSrv.RepoURL("platform"), helm.URL)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pw := []string{"COSIGN_PASSWORD=ferry"}
	must(t, w.dir, pw, "cosign", "generate-key-pair", "--output-key-prefix", "mirror")
	write("ferry.yaml", spec("720h"))
	os.MkdirAll(filepath.Join(w.dir, "out"), 0o755)
	must(t, w.dir, pw, "mirror", "pack", "-f", "ferry.yaml", "--key", "mirror.key", "--sequence", "1", "--out", "b1", "--tar", "out/b1.tar", "--split", "4KiB")
	root1 := verifyBundle(t, w.dir, nil, "b1").Root
	w.bundle1 = "out/b1.tar.parts.json"
	// The same state again as sequence 1, with another lifetime so its root differs.
	write("ferry.yaml", spec("719h"))
	must(t, w.dir, pw, "mirror", "pack", "-f", "ferry.yaml", "--key", "mirror.key", "--sequence", "1", "--tar", "out/old.tar")
	w.old = "out/old.tar"

	if w.commit2, err = gitSrv.Commit(ctx, "platform", files("moon"), "moon"); err != nil {
		t.Fatal(err)
	}
	if _, err := helm.AddChart("podinfo", w.chart2, tpl, nil); err != nil {
		t.Fatal(err)
	}
	write("ferry.yaml", spec("720h"))
	must(t, w.dir, pw, "mirror", "pack", "-f", "ferry.yaml", "--key", "mirror.key", "--sequence", "2", "--previous", root1, "--tar", "out/b2.tar")
	w.bundle2 = "out/b2.tar"
	w.gitURL, w.helmURL = gitSrv.RepoURL("platform"), helm.URL
	gitSrv.Stop()
	helm.Stop()
	return w
}

// clusterObjects are the Flux objects the agent reconciles: the sources, named by the URLs
// ferry.yaml lists, the Kustomization and the HelmRelease. The HelmRelease's target namespace
// is created here (dependsOn is same-kind: a HelmRelease cannot wait for the Kustomization
// that also applies it).
func (w *agentWorld) clusterObjects() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: ferry-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: platform, namespace: ferry-system}
spec: {url: %s, ref: {branch: main}, interval: 1m}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts, namespace: ferry-system}
spec: {url: %s, interval: 1m}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: platform, namespace: ferry-system}
spec: {interval: 5s, sourceRef: {kind: GitRepository, name: platform}, path: apps, prune: true}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: ferry-system}
spec:
  interval: 5s
  chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: charts}}}
  targetNamespace: demo
`, w.gitURL, w.helmURL)
}

// TestAgentOfflineInNetworkNamespace runs `sync run` inside a network namespace that can reach
// nothing but the API server (through a forwarder on the host), feeds it bundles through a drop
// directory, and checks the whole flow: parts are waited for, bundle 1 is verified, imported,
// served and reconciled; bundle 2 moves the cluster forward; an older bundle is rejected as a
// rollback and changes nothing. At the end the namespace's firewall shows that the agent tried
// to reach nothing else.
func TestAgentOfflineInNetworkNamespace(t *testing.T) {
	ctx := context.Background()
	w := packAgentWorld(t)
	cluster := testenv.NewCluster(t)
	if err := reconcile.InstallCRDs(ctx, cluster.Config); err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	if err := os.WriteFile(filepath.Join(w.dir, "objects.yaml"), []byte(w.clusterObjects()), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, w.dir, nil, "kubectl", append(kube, "apply", "-f", "objects.yaml")...)

	ns := testenv.NewNetNS(t)
	api := testenv.NewForwarder(t, ns.HostIP, cluster.Host)
	ns.Allow(t, api.Port())
	kubeconfig := agentKubeconfig(t, w.dir, cluster, "https://"+api.Addr)
	drop := filepath.Join(w.dir, "drop")
	os.MkdirAll(drop, 0o755)
	config := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: %s
keys: [{path: %s}]
sources: [{dir: %s}]
intervals: {poll: 1s, reconcile: 3s, retryMin: 1s, retryMax: 5s}
serve: {listen: ":5000"}
health: {listen: ":8080"}
kubeconfig: %s
installCRDs: true
leaderElection: {enabled: true, namespace: ferry-system, name: ferry-sync}
`, filepath.Join(w.dir, "cache"), filepath.Join(w.dir, "mirror.pub"), drop, kubeconfig)
	if err := os.WriteFile(filepath.Join(w.dir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(w.dir, "agent.log")
	stopAgent := startAgent(t, ns, logPath, "--config", filepath.Join(w.dir, "config.yaml"))
	health := "http://" + ns.NSIP + ":8080"
	waitFor(t, logPath, 30*time.Second, "the agent answers /healthz", func() bool { return httpGet(health+"/healthz") == 200 })

	// Bundle 1 arrives in parts, the part list first: nothing happens until the last part.
	parts, err := filepath.Glob(filepath.Join(w.dir, "out", "b1.tar.part-*"))
	if err != nil || len(parts) < 2 {
		t.Fatalf("bundle 1 parts: %v %v", parts, err)
	}
	copyFile(t, filepath.Join(w.dir, w.bundle1), filepath.Join(drop, "b1.tar.parts.json"))
	for _, p := range parts[:len(parts)-1] {
		copyFile(t, p, filepath.Join(drop, filepath.Base(p)))
	}
	time.Sleep(3 * time.Second) // three polls
	if m := metric(t, health, "ferry_bundles_accepted_total"); m != "" && m != "0" {
		t.Fatalf("a bundle was accepted before its last part arrived: ferry_bundles_accepted_total %s", m)
	}
	last := parts[len(parts)-1]
	copyFile(t, last, filepath.Join(drop, filepath.Base(last)))
	waitFor(t, logPath, 60*time.Second, "bundle 1 imported", func() bool { return metric(t, health, "ferry_current_bundle_sequence") == "1" })
	waitReady(t, w.dir, kube, w.commit1, w.chart1)
	if got := configMap(t, w.dir, kube, "greeting", "hello"); got != "world" {
		t.Fatalf("after bundle 1, demo/greeting hello = %q, want world", got)
	}
	// The chart's ConfigMap, named by Flux's release name <targetNamespace>-<name>.
	if got := configMap(t, w.dir, kube, "demo-podinfo", "chart"); got != w.chart1 {
		t.Fatalf("after bundle 1, demo/demo-podinfo chart = %q, want %s", got, w.chart1)
	}
	// The agent serves what it imported: the registry's catalog holds the chart, Git clones.
	serve := "http://" + ns.NSIP + ":5000"
	if code := httpGet(serve + "/v2/"); code != 200 {
		t.Fatalf("served registry /v2/: %d", code)
	}
	clone := filepath.Join(w.dir, "clone")
	if out, err := exec.Command("git", "clone", "--quiet", serve+"/git/platform.git", clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone from the agent: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(clone, "apps", "configmap.yaml")); err != nil || !strings.Contains(string(b), "world") {
		t.Fatalf("cloned tree: %v %s", err, b)
	}

	// Bundle 2, dropped as one tar (written under another name, then renamed into place).
	copyFile(t, filepath.Join(w.dir, w.bundle2), filepath.Join(drop, ".b2.tar.partial"))
	if err := os.Rename(filepath.Join(drop, ".b2.tar.partial"), filepath.Join(drop, "b2.tar")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, logPath, 60*time.Second, "bundle 2 imported", func() bool { return metric(t, health, "ferry_current_bundle_sequence") == "2" })
	waitReady(t, w.dir, kube, w.commit2, w.chart2)
	if got := configMap(t, w.dir, kube, "greeting", "hello"); got != "moon" {
		t.Fatalf("after bundle 2, demo/greeting hello = %q, want moon", got)
	}
	if got := configMap(t, w.dir, kube, "demo-podinfo", "chart"); got != w.chart2 {
		t.Fatalf("after bundle 2, demo/demo-podinfo chart = %q, want %s", got, w.chart2)
	}

	// A hand edit is drift: put back within one interval (5s) of the Kustomization, and counted.
	must(t, w.dir, nil, "kubectl", append(kube, "patch", "configmap", "greeting", "-n", "demo", "--type=merge", "-p", `{"data":{"hello":"edited by hand"}}`)...)
	edited := time.Now()
	waitFor(t, logPath, 20*time.Second, "the hand edit put back", func() bool { return configMap(t, w.dir, kube, "greeting", "hello") == "moon" })
	if d := time.Since(edited); d > 5*time.Second+4*time.Second {
		t.Errorf("the hand edit was put back after %s; the interval is 5s and the agent's pass 3s", d)
	}
	if m := metric(t, health, "ferry_drift_corrections_total"); m == "" || m == "0" {
		t.Errorf("ferry_drift_corrections_total = %q after a hand edit was put back", m)
	}

	// An older bundle: rejected as a rollback, left where it was, and the cluster stays.
	copyFile(t, filepath.Join(w.dir, w.old), filepath.Join(drop, "old.tar"))
	waitFor(t, logPath, 30*time.Second, "the older bundle rejected", func() bool {
		return metric(t, health, `ferry_bundles_rejected_total{check="rollback"}`) == "1"
	})
	if _, err := os.Stat(filepath.Join(drop, "old.tar")); err != nil {
		t.Fatalf("the rejected bundle was not left where it was: %v", err)
	}
	events := must(t, w.dir, nil, "kubectl", append(kube, "get", "events.events.k8s.io", "-n", "ferry-system", "-o", "jsonpath={range .items[*]}{.reason}: {.note}{\"\\n\"}{end}")...)
	if !strings.Contains(events, "BundleRejected") || !strings.Contains(events, "rollback") {
		t.Fatalf("no BundleRejected Event naming the rollback in ferry-system:\n%s", events)
	}
	time.Sleep(4 * time.Second) // at least one more reconcile interval
	waitReady(t, w.dir, kube, w.commit2, w.chart2)
	if got := configMap(t, w.dir, kube, "greeting", "hello"); got != "moon" {
		t.Fatalf("after the rejected bundle, demo/greeting hello = %q, want moon", got)
	}
	if m := metric(t, health, "ferry_current_bundle_sequence"); m != "2" {
		t.Fatalf("after the rejected bundle, the current sequence is %s, want 2", m)
	}

	// The proof: the agent reached the API server, and its namespace's firewall dropped nothing.
	stopAgent()
	allowed, denied, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if allowed == 0 || api.Connections() == 0 {
		t.Fatalf("the agent never reached the API server through the namespace (allowed %d, relayed %d)", allowed, api.Connections())
	}
	if denied != 0 {
		t.Fatalf("the agent tried to reach something other than the API server: %d packets dropped in its network namespace; log %s", denied, logPath)
	}
	t.Logf("network namespace %s: %d connections to the API server, 0 packets to anything else", ns.Name, allowed)
}

// agentKubeconfig writes a kubeconfig that reaches the API server at server (the forwarder),
// checking its certificate under the name the API server's certificate holds.
func agentKubeconfig(t *testing.T, dir string, c *testenv.Cluster, server string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ferry"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.Config.CAData, TLSServerName: "kubernetes.default.svc"}
	kc.AuthInfos["ferry"] = &clientcmdapi.AuthInfo{Token: c.Config.BearerToken}
	kc.Contexts["ferry"] = &clientcmdapi.Context{Cluster: "ferry", AuthInfo: "ferry"}
	kc.CurrentContext = "ferry"
	path := filepath.Join(dir, "agent.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs `sync run` in the namespace (or, with ns nil, here) with its output in logPath; the returned function
// stops it with SIGTERM and fails the test if it does not exit cleanly.
func startAgent(t *testing.T, ns *testenv.NetNS, logPath string, args ...string) func() {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(context.Background(), filepath.Join(bin, "sync"), append([]string{"run"}, args...)...)
	} else {
		cmd = exec.Command(filepath.Join(bin, "sync"), append([]string{"run"}, args...)...)
	}
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=ferry-system", "POD_NAME=ferry-sync-test")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sync run exited with %v on SIGTERM; log %s:\n%s", err, logPath, tail(logPath))
			}
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("sync run did not stop within 20s of SIGTERM; log %s:\n%s", logPath, tail(logPath))
		}
		log.Close()
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 250ms until it holds, failing with the agent's log after timeout.
func waitFor(t *testing.T, logPath string, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; agent log %s:\n%s", what, timeout, logPath, tail(logPath))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%s", what)
}

// waitReady waits with stock kubectl until the Kustomization is Ready at the commit (Flux's
// revision main@sha1:<commit>) and the HelmRelease Ready with the chart version deployed (its
// newest history entry: HelmRelease v2 has no lastAppliedRevision).
func waitReady(t *testing.T, dir string, kube []string, commit, chart string) {
	t.Helper()
	for _, obj := range []struct {
		name string
		want []string
	}{
		{"kustomization/platform", []string{"{.status.lastAppliedRevision}=main@sha1:" + commit}},
		{"helmrelease/podinfo", []string{"{.status.history[0].chartVersion}=" + chart, "{.status.history[0].status}=deployed"}},
	} {
		for _, w := range obj.want {
			must(t, dir, nil, "kubectl", append(kube, "wait", "-n", "ferry-system", "--for=jsonpath="+w, obj.name, "--timeout=60s")...)
		}
		must(t, dir, nil, "kubectl", append(kube, "wait", "-n", "ferry-system", "--for=condition=Ready", obj.name, "--timeout=60s")...)
	}
}

func configMap(t *testing.T, dir string, kube []string, name, key string) string {
	t.Helper()
	return must(t, dir, nil, "kubectl", append(kube, "get", "configmap", name, "-n", "demo", "-o", "jsonpath={.data."+key+"}")...)
}

// metric returns the value of one sample of the agent's /metrics ("" when absent).
func metric(t *testing.T, base, sample string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func httpGet(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// TestAgentKilledMidImportRecovers kills `sync run` (SIGKILL, as a power cut would) in the middle
// of importing a bundle: the cache keeps the previous bundle, whole; the agent restarted on it
// finishes the job, and fsck finds the cache whole.
func TestAgentKilledMidImportRecovers(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 3, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 30, sign)
	cluster := testenv.NewCluster(t)
	drop, cacheDir := filepath.Join(dir, "drop"), filepath.Join(dir, "cache")
	os.MkdirAll(drop, 0o755)
	health := freeAddr(t)
	config := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: %s
keys: [{path: %s}]
sources: [{dir: %s}]
intervals: {poll: 500ms, reconcile: 1m, retryMin: 1s, retryMax: 5s}
serve: {listen: "%s", gitWorkDir: %s}
health: {listen: "%s"}
kubeconfig: %s
installCRDs: true
`, cacheDir, filepath.Join(dir, "ops.pub"), drop, freeAddr(t), filepath.Join(dir, "git"), health, cluster.Kubeconfig)
	cfgPath := filepath.Join(dir, "sync.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	current := func() uint64 {
		var st struct{ State struct{ Sequence uint64 } }
		if err := json.Unmarshal([]byte(must(t, dir, nil, "sync", "status", "--cache", cacheDir, "--output", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.State.Sequence
	}

	// Bundle 1, imported by an agent that is then stopped.
	copyDir(t, b1.Dir, filepath.Join(drop, "b1"))
	logPath := filepath.Join(dir, "agent-1.log")
	stop := startAgent(t, nil, logPath, "--config", cfgPath)
	waitFor(t, logPath, 60*time.Second, "bundle 1 imported", func() bool { return metric(t, "http://"+health, "ferry_current_bundle_sequence") == "1" })
	stop()

	// Bundle 2 arrives; the agent dies a hundred durable steps into the cache's work, in the
	// middle of copying bundle 2's blobs (its import takes about two hundred).
	copyDir(t, b2.Dir, filepath.Join(drop, "b2"))
	crashLog := filepath.Join(dir, "agent-crash.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // if the kill never comes
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "sync"), "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), cache.CrashEnv+"=100", "POD_NAMESPACE=ferry-system")
	out, err := cmd.CombinedOutput()
	os.WriteFile(crashLog, out, 0o644)
	var ee *exec.ExitError
	if !asExit(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL || ctx.Err() != nil {
		t.Fatalf("sync run was to kill itself mid-import; it ended with %v\n%s", err, tail(crashLog))
	}
	if !strings.Contains(string(out), "importing bundle") || strings.Contains(string(out), "bundle accepted") {
		t.Fatalf("the kill did not land during bundle 2's import:\n%s", tail(crashLog))
	}
	if got := current(); got != 1 {
		t.Fatalf("after the kill mid-import the current bundle is %d, want 1 (the import must not be half visible)", got)
	}

	// Restarted, the agent recovers the cache, imports bundle 2 whole, and fsck agrees.
	logPath = filepath.Join(dir, "agent-2.log")
	stop = startAgent(t, nil, logPath, "--config", cfgPath)
	waitFor(t, logPath, 60*time.Second, "bundle 2 imported after the restart", func() bool { return metric(t, "http://"+health, "ferry_current_bundle_sequence") == "2" })
	stop()
	if got := current(); got != 2 {
		t.Fatalf("after the restart the current bundle is %d, want 2", got)
	}
	fsck := must(t, dir, nil, "sync", "fsck", "--cache", cacheDir)
	t.Logf("killed mid-import, restarted: bundle 2 imported; fsck: %s", strings.TrimSpace(fsck))
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

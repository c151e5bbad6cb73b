package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PauseImage is the sandbox image of the test node, built here and imported into its containerd.
const PauseImage = "ferry.test/pause:1"

// EchoImage is a test workload image imported into every test node: an HTTP server on port 8080
// answering "ferry-echo <hostname>".
const EchoImage = "ferry.test/echo:1"

// Node is a Cluster with one real node: kube-controller-manager, kube-scheduler, containerd, a
// kubelet and kube-proxy, so Pods run, reach the API server through the kubernetes Service, and
// NodePorts answer on the node's address. Every address it uses stays on this machine: the
// node's address is an alias on lo (the API server binds it), Pods sit on a bridge of their own,
// and the service range and pod range have unreachable routes, so a ClusterIP dialled from the
// host fails at once instead of leaving through the default route. kube-proxy's nftables tables
// are machine-wide: one Node runs on a machine at a time (NodeLockPath).
type Node struct {
	*Cluster
	// Name is the Node object's name.
	Name string
	// IP is the node's address (a /32 alias on lo).
	IP string
	// PodRange and ServiceRange are the node's pod CIDR (its bridge) and the cluster's ClusterIP range.
	PodRange, ServiceRange string
	// Socket is containerd's socket; HostsDir is its registry config_path (one folder per
	// registry host, each with a hosts.toml).
	Socket, HostsDir string

	dir       string
	procs     []*process // kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy: stopped in reverse
	undo      []func()   // network changes, undone in reverse
	kubelet   *process
	kubeProxy *process
	bridge    string
	ctr       string   // containerd's client
	nft       string   // nft, which removes kube-proxy's tables at Stop
	lock      *os.File // NodeLockPath, held until Stop
	stopped   bool
}

// NodeLockPath is the machine-wide lock a running Node holds from StartNode until Stop:
// kube-proxy's nftables tables (ip and ip6 "kube-proxy") are one per machine, and the
// kube-proxies of two nodes (two test binaries of `go test ./...`) would each rewrite them.
const NodeLockPath = "/run/ferry-test-node.lock"

// Tables of kube-proxy's nftables mode, removed at Stop.
var kubeProxyTables = [][2]string{{"ip", "kube-proxy"}, {"ip6", "kube-proxy"}}

// NewNode starts a cluster with one node for the test; t.Cleanup stops every process and undoes
// every route, address, bridge, mount and nftables table it made. It needs root and the tools
// of `make tools`; without them the test fails with the reason. While another Node runs on the
// machine it waits (up to 20 minutes, saying so in the test's log) for NodeLockPath.
func NewNode(t testing.TB) *Node {
	t.Helper()
	bins, err := nodeTools()
	if err != nil {
		t.Fatalf("test node: %v", err)
	}
	lockCtx, cancelLock := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancelLock()
	lock, err := lockNode(lockCtx, NodeLockPath, t.Logf)
	if err != nil {
		t.Fatalf("test node: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	n, err := startNode(ctx, t.TempDir(), bins, lock)
	if err != nil {
		t.Fatalf("test node: %v", err)
	}
	t.Logf("test node %s Ready in %s", n.Name, time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() { n.Stop() })
	return n
}

// StartNode starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, a
// kubelet and kube-proxy keeping everything under dir, imports PauseImage and EchoImage into
// containerd, and returns once the node is Ready and kube-proxy has written its rules. It first
// takes NodeLockPath, waiting (and logging that it waits) while another Node holds it, until ctx
// ends; Stop releases it.
func StartNode(ctx context.Context, dir string) (*Node, error) {
	bins, err := nodeTools()
	if err != nil {
		return nil, err
	}
	lock, err := lockNode(ctx, NodeLockPath, log.Printf)
	if err != nil {
		return nil, err
	}
	return startNode(ctx, dir, bins, lock)
}

// nodeTools checks that the node can run here and returns the paths of its programs.
func nodeTools() (map[string]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: containerd, runc and the kubelet run Pods, and the node's routes and kube-proxy's nftables rules need CAP_NET_ADMIN")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("ip (iproute2) not found: %w", err)
	}
	bins := map[string]string{}
	for _, b := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "nft", "containerd", "ctr", "runc", "cni/bridge", "cni/host-local", "cni/loopback"} {
		p, err := ToolPath(b)
		if err != nil {
			return nil, err
		}
		bins[b] = p
	}
	return bins, nil
}

// startNode starts the node holding lock (NodeLockPath), which Stop releases.
func startNode(ctx context.Context, dir string, bins map[string]string, lock *os.File) (*Node, error) {
	n := &Node{dir: dir, ctr: bins["ctr"], nft: bins["nft"], lock: lock}
	if err := n.start(ctx, bins); err != nil {
		n.Stop() // undoes whatever part was made
		return nil, err
	}
	return n, nil
}

// lockNode takes the lock at path (NodeLockPath; flock, exclusive), polling while another
// holder has it and logging once that it waits, until ctx ends. The holder's pid is written in
// the file for that message. The kernel releases the lock when its holder exits, however it
// exits, or closes the file.
func lockNode(ctx context.Context, path string, logf func(format string, args ...any)) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node lock %s: %w", path, err)
	}
	start := time.Now()
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("node lock %s: flock: %w", path, err)
		}
		holder, _ := os.ReadFile(path)
		if !waiting {
			waiting = true
			logf("test node: waiting for %s, held by another test node (pid %s): kube-proxy's nftables rules are machine-wide, so one node runs at a time", path, bytes.TrimSpace(holder))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("node lock %s: still held by another test node (pid %s) after %s: %w; wait for that test to end, or find it with 'fuser %s'", path, bytes.TrimSpace(holder), time.Since(start).Round(time.Second), ctx.Err(), path)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if waiting {
		logf("test node: took %s after %s", path, time.Since(start).Round(100*time.Millisecond))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func (n *Node) start(ctx context.Context, bins map[string]string) error {
	if err := n.network(); err != nil {
		return err
	}
	// kube-apiserver binds and advertises the node's address: the kubernetes Service's endpoint
	// is then an address that Pods' packets, DNATed by kube-proxy, are delivered to on this
	// machine (127.0.0.1 would be a martian destination for a packet from the bridge).
	c, err := startCluster(ctx, n.dir, n.ServiceRange, n.IP)
	if err != nil {
		return err
	}
	n.Cluster = c
	if err := n.startControllers(bins); err != nil {
		return err
	}
	if err := n.startContainerd(ctx, bins); err != nil {
		return err
	}
	if err := n.importImages(ctx); err != nil {
		return err
	}
	if err := n.startKubelet(ctx, bins["kubelet"]); err != nil {
		return err
	}
	return n.startKubeProxy(ctx, bins)
}

// network picks a free set of private ranges and makes the node's address, bridge and
// unreachable routes. The ranges are random so that nodes of concurrent test binaries differ;
// a taken range makes `ip route add` fail, and another is tried.
func (n *Node) network() error {
	var errs []error
	for range 5 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		id := hex.EncodeToString(b)
		x := b[0]
		serviceRange := fmt.Sprintf("10.96.%d.0/24", x)
		// The service range first: with no kube-proxy, nothing may dial a ClusterIP before
		// this route says it is unreachable.
		if out, err := exec.Command("ip", "route", "add", "unreachable", serviceRange).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip route add unreachable %s: %v: %s", serviceRange, err, bytes.TrimSpace(out)))
			continue
		}
		n.undo = append(n.undo, func() { _ = exec.Command("ip", "route", "del", "unreachable", serviceRange).Run() })
		n.ServiceRange = serviceRange
		n.PodRange = fmt.Sprintf("10.244.%d.0/24", x)
		n.IP = fmt.Sprintf("10.245.%d.1", x)
		n.Name = "ferry-node-" + id
		bridge := "fyb" + id
		n.bridge = bridge
		gateway := fmt.Sprintf("10.244.%d.1", x)
		steps := []struct{ do, undo []string }{
			// The pod range is unreachable beyond the bridge: the bridge's own route (metric 0)
			// wins while it exists, and nothing for a pod address leaves through the default route.
			{[]string{"ip", "route", "add", "unreachable", n.PodRange, "metric", "4000"}, []string{"ip", "route", "del", "unreachable", n.PodRange, "metric", "4000"}},
			// kubelet refuses a loopback node IP; an alias on lo is local and goes nowhere.
			{[]string{"ip", "addr", "add", n.IP + "/32", "dev", "lo"}, []string{"ip", "addr", "del", n.IP + "/32", "dev", "lo"}},
			// The bridge exists beforehand with the gateway address, so the CNI bridge plugin
			// runs with isGateway false and does not turn on IP forwarding.
			{[]string{"ip", "link", "add", bridge, "type", "bridge"}, []string{"ip", "link", "del", bridge}},
			{[]string{"ip", "addr", "add", gateway + "/24", "dev", bridge}, nil},
			{[]string{"ip", "link", "set", bridge, "up"}, nil},
		}
		for _, s := range steps {
			if out, err := exec.Command(s.do[0], s.do[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("node network: %s: %v: %s", strings.Join(s.do, " "), err, bytes.TrimSpace(out))
			}
			if s.undo != nil {
				u := s.undo
				n.undo = append(n.undo, func() { _ = exec.Command(u[0], u[1:]...).Run() })
			}
		}
		return n.writeCNI(bridge, gateway)
	}
	return fmt.Errorf("node network: no free service range: %w", errors.Join(errs...))
}

// writeCNI writes the bridge network: Pods get an address of the pod range and one route, the
// service range through the gateway on the bridge, where kube-proxy's rules DNAT it.
func (n *Node) writeCNI(bridge, gateway string) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "ferry",
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    bridge,
			"isGateway": false,
			"ipMasq":    false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.PodRange}}},
				"routes":  []map[string]string{{"dst": n.ServiceRange, "gw": gateway}},
				"dataDir": filepath.Join(n.dir, "cni-ipam"),
			},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	confDir := filepath.Join(n.dir, "cni-conf")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(confDir, "10-ferry.conflist"), b, 0o644)
}

func (n *Node) startControllers(bins map[string]string) error {
	kcm, err := startProcess("kube-controller-manager", bins["kube-controller-manager"], []string{
		"--kubeconfig", n.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--service-account-private-key-file", n.saKey,
		"--root-ca-file", n.ca,
		"--use-service-account-credentials=false",
		"--service-cluster-ip-range", n.ServiceRange,
		"--controllers", "*,-nodeipam",
		"--flex-volume-plugin-dir", filepath.Join(n.dir, "kube-controller-manager-volume-plugins"),
	}, nil, n.dir)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, kcm)
	sched, err := startProcess("kube-scheduler", bins["kube-scheduler"], []string{
		"--kubeconfig", n.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0",
	}, nil, n.dir)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, sched)
	return nil
}

func (n *Node) startContainerd(ctx context.Context, bins map[string]string) error {
	base := filepath.Join(n.dir, "containerd")
	n.Socket = filepath.Join(base, "containerd.sock")
	n.HostsDir = filepath.Join(n.dir, "certs.d")
	for _, d := range []string{base, n.HostsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This machine's bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (kubelet
  # asks -998 for the sandbox) and every Pod would fail to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(base, "root"), filepath.Join(base, "state"), n.Socket, n.Socket+".ttrpc",
		filepath.Join(base, "opt"), PauseImage, bins["runc"], filepath.Join(base, "runc"), filepath.Dir(bins["cni/bridge"]),
		filepath.Join(n.dir, "cni-conf"), n.HostsDir)
	cfgPath := filepath.Join(base, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := startProcess("containerd", bins["containerd"], []string{"--config", cfgPath}, nil, n.dir)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return p.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		return exec.CommandContext(ctx, bins["ctr"], "-a", n.Socket, "version").Run()
	})
}

// importImages builds PauseImage and EchoImage (static Go binaries on an empty base) and
// imports them into containerd's k8s.io namespace, where the CRI finds them.
func (n *Node) importImages(ctx context.Context) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	for ref, pkg := range map[string]string{PauseImage: "pause", EchoImage: "echo"} {
		if err := n.ImportGoImage(ctx, ref, filepath.Join(root, "internal", "testenv", "testdata", "nodeimages", pkg)); err != nil {
			return err
		}
	}
	return nil
}

// ImportGoImage builds the Go main package in pkgDir into a static binary, wraps it as the only
// file (/app, the entrypoint) of an image named ref for this machine's platform, and imports it
// into the node's containerd. Pods run it with imagePullPolicy Never.
func (n *Node) ImportGoImage(ctx context.Context, ref, pkgDir string) error {
	work := filepath.Join(n.dir, "images")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(work, filepath.Base(pkgDir))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image %s: go build %s: %v\n%s", ref, pkgDir, err, out)
	}
	img, err := goImage(bin)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	archive := bin + ".tar"
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		return fmt.Errorf("image %s: write archive: %w", ref, err)
	}
	if err := n.ctrImport(ctx, archive); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}

// ctrImport imports an image archive into containerd's k8s.io namespace, where the CRI finds it.
func (n *Node) ctrImport(ctx context.Context, archive string, flags ...string) error {
	args := append([]string{"-a", n.Socket, "-n", "k8s.io", "images", "import"}, flags...)
	out, err := exec.CommandContext(ctx, n.ctr, append(args, archive)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import: %v\n%s", err, out)
	}
	return nil
}

// goImage is an image holding only bin as /app, its entrypoint.
func goImage(bin string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tarFile(tw, bin, "app", 0o755); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return singleLayerImage(buf.Bytes(), func(c *v1.Config) { c.Entrypoint = []string{"/app"} })
}

// singleLayerImage is an OCI image of one layer (an uncompressed tar) on an empty base, with
// os/arch in its config (the CRI refuses an image without them) and configure's settings.
func singleLayerImage(layerTar []byte, configure func(*v1.Config)) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	configure(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

func (n *Node) startKubelet(ctx context.Context, bin string) error {
	root := filepath.Join(n.dir, "kubelet")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	healthz, err := freePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine uses cgroup v1: kubelet 1.37 refuses it unless told not to, and runs it with the
# cgroupfs driver (containerd 1.6 lacks the CRI RuntimeConfig call that would name its driver).
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
failSwapOn: false
resolvConf: ""
registerNode: true
# Test folders live on a shared disk: eviction and image GC must not act on its fill level.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Under the test's folder, not the machine's /var/log/pods and /usr/libexec/kubernetes.
podLogsDir: %s
volumePluginDir: %s
`, n.Socket, port, healthz, filepath.Join(root, "pod-logs"), filepath.Join(root, "volume-plugins"))
	cgroupRoot, err := n.makeCgroupRoot()
	if err != nil {
		return err
	}
	cfg += fmt.Sprintf("# Pods of this node only: another node's kubelet would remove them as orphans.\ncgroupRoot: %s\n", cgroupRoot)
	cfgPath := filepath.Join(root, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := startProcess("kubelet", bin, []string{
		"--config", cfgPath,
		"--kubeconfig", n.Kubeconfig,
		"--root-dir", root,
		"--cert-dir", filepath.Join(root, "pki"),
		"--hostname-override", n.Name,
		"--node-ip", n.IP,
		"--v", "1",
	}, nil, n.dir)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	n.kubelet = p
	cs, err := n.Clientset()
	if err != nil {
		return err
	}
	return p.waitReady(ctx, 90*time.Second, func(ctx context.Context) error {
		// Pods are refused until kube-controller-manager has made the default ServiceAccount.
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("kube-controller-manager: default ServiceAccount: %w", err)
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", n.Name, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", n.Name)
	})
}

// startKubeProxy runs kube-proxy in nftables mode for this node and waits until its healthz
// says it has written the rules of every Service. What it is told, and why:
//   - nodePortAddresses: the node's address only, so NodePorts answer there and nowhere else;
//   - clusterCIDR: the pod range, so traffic from Pods is not masqueraded and from elsewhere is;
//   - conntrack: every field 0 (maxPerCore, min, the timeouts), which kube-proxy reads as "leave
//     the machine's nf_conntrack sysctls as they are";
//   - healthz and metrics on free ports of 127.0.0.1;
//   - PATH holding only nft: at start kube-proxy removes what its iptables and ipvs modes may
//     have left, machine-wide, by running iptables-save/iptables-restore and `modprobe ip_vs`
//     and then flushing every IPVS rule; with no such programs to run it skips all of that.
func (n *Node) startKubeProxy(ctx context.Context, bins map[string]string) error {
	dir := filepath.Join(n.dir, "kube-proxy")
	path := filepath.Join(dir, "bin")
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(bins["nft"], filepath.Join(path, "nft")); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	healthz, err := freePort()
	if err != nil {
		return err
	}
	metrics, err := freePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
nodePortAddresses: [%s/32]
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
# kube-proxy's own process only; lowering it needs CAP_SYS_RESOURCE, which this machine lacks.
oomScoreAdj: 0
# 0 everywhere: leave the machine's nf_conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  tcpBeLiberal: false
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, n.Kubeconfig, n.Name, n.IP, n.PodRange, n.IP, healthz, metrics)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	// Tables present now are a dead node's (this node holds NodeLockPath): start clean.
	if err := n.removeKubeProxyTables(); err != nil {
		return fmt.Errorf("kube-proxy: tables left by an earlier test node: %w", err)
	}
	p, err := startProcess("kube-proxy", bins["kube-proxy"], []string{"--config", cfgPath, "--v", "1"}, []string{"PATH=" + path}, n.dir)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	n.kubeProxy = p
	// 200 once the first sync of Services and EndpointSlices has been written.
	return p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		return httpStatus(ctx, "http://"+loopback(healthz)+"/healthz", http.StatusOK, nil)
	})
}

// removeKubeProxyTables deletes kube-proxy's nftables tables (kube-proxy leaves them when it
// stops) and returns the ones it could not delete, with nft's answer.
func (n *Node) removeKubeProxyTables() error {
	var errs []error
	for _, t := range kubeProxyTables {
		if exec.Command(n.nft, "list", "table", t[0], t[1]).Run() != nil {
			continue // absent
		}
		if out, err := exec.Command(n.nft, "delete", "table", t[0], t[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table %s %s: %v: %s", t[0], t[1], err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// cgroupFS holds one folder per cgroup v1 hierarchy.
const cgroupFS = "/sys/fs/cgroup"

// makeCgroupRoot makes /ferry-<node> in every cgroup v1 hierarchy (cpuset with its parent's CPUs
// and memory nodes, as a child needs them) and undoes it at Stop, children first.
func (n *Node) makeCgroupRoot() (string, error) {
	root := "/" + n.Name
	hier, err := os.ReadDir(cgroupFS)
	if err != nil {
		return "", fmt.Errorf("cgroups: %w", err)
	}
	for _, h := range hier {
		if !h.IsDir() {
			continue
		}
		d := filepath.Join(cgroupFS, h.Name(), root)
		if h.Name() == "unified" { // the cgroup v2 tree of a hybrid host: runc makes the folder itself
			n.undo = append(n.undo, func() { removeCgroup(d) })
			continue
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", fmt.Errorf("cgroups: %w", err)
		}
		n.undo = append(n.undo, func() { removeCgroup(d) })
		if h.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(cgroupFS, "cpuset", f))
				if err != nil {
					return "", fmt.Errorf("cgroups: %w", err)
				}
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return "", fmt.Errorf("cgroups: %s: %w", filepath.Join(d, f), err)
				}
			}
		}
	}
	return root, nil
}

// removeCgroup removes the cgroup d and every cgroup under it, deepest first.
func removeCgroup(d string) {
	entries, _ := os.ReadDir(d)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(d, e.Name()))
		}
	}
	_ = os.Remove(d)
}

// Stop deletes every Pod (so the kubelet tears down their sandboxes and networks), stops
// kube-proxy and the kubelet, kills what containerd still runs, stops containerd, the
// controllers and the cluster, unmounts whatever is left mounted under the node's folder, undoes
// its network changes, deletes kube-proxy's nftables tables and releases NodeLockPath.
func (n *Node) Stop() error {
	if n.stopped {
		return nil
	}
	n.stopped = true
	defer func() {
		if n.lock != nil {
			n.lock.Close() // releases the flock, last: the machine's rules are this node's until here
		}
	}()
	ctr := n.ctr
	if n.kubelet != nil && n.Cluster != nil {
		n.drain(ctr)
	}
	var netns []string
	for i := len(n.procs) - 1; i >= 0; i-- {
		p := n.procs[i]
		if p.name == "containerd" && ctr != "" {
			netns = n.killContainers(ctr)
		}
		p.stop()
	}
	if n.Cluster != nil {
		n.Cluster.Stop()
	}
	for _, ns := range netns {
		_ = exec.Command("umount", ns).Run()
		_ = os.Remove(ns)
	}
	unmountUnder(n.dir)
	removeLogLinks(n.dir)
	for i := len(n.undo) - 1; i >= 0; i-- {
		n.undo[i]()
	}
	if n.kubeProxy != nil {
		return n.removeKubeProxyTables()
	}
	return nil
}

// drain deletes every Pod at once and waits (up to 30 s) for containerd to run no task.
func (n *Node) drain(ctr string) {
	cs, err := n.Clientset()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		_ = cs.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}
	for ctx.Err() == nil {
		out, err := exec.CommandContext(ctx, ctr, "-a", n.Socket, "-n", "k8s.io", "tasks", "ls", "-q").Output()
		if err == nil && len(bytes.TrimSpace(out)) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killContainers kills and deletes every task and container containerd still has, and returns
// the network namespace files of their sandboxes.
func (n *Node) killContainers(ctr string) []string {
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, ctr, append([]string{"-a", n.Socket, "-n", "k8s.io"}, args...)...).Output()
		return out
	}
	var netns []string
	for _, id := range strings.Fields(string(run("containers", "ls", "-q"))) {
		var info struct {
			Spec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string }
				}
			}
		}
		if json.Unmarshal(run("containers", "info", id), &info) == nil {
			for _, ns := range info.Spec.Linux.Namespaces {
				if ns.Type == "network" && strings.HasPrefix(ns.Path, "/var/run/netns/") {
					netns = append(netns, ns.Path)
				}
			}
		}
		run("tasks", "kill", "-s", "SIGKILL", id)
		run("tasks", "delete", "-f", id)
		run("containers", "delete", id)
	}
	return netns
}

// removeLogLinks removes the links the kubelet makes in /var/log/containers (a path it does
// not let be changed) to the logs of its containers under dir.
func removeLogLinks(dir string) {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dir+"/") {
			_ = os.Remove(l)
		}
	}
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", points[i]).Run()
	}
}

package testenv

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// TestNodeRunsPods starts the real node: it registers Ready, a Pod running the locally built
// echo image becomes Ready and answers on its pod IP from the host, a Pod reaches the API server
// through the kubernetes Service with its ServiceAccount token, the host reaches the echo Pod
// through a NodePort on the node's address, and a ClusterIP dialled from the host fails at once
// as unreachable instead of leaving the machine. Stop leaves nothing behind.
func TestNodeRunsPods(t *testing.T) {
	n := NewNode(t)
	cs, err := n.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !nodeReady(node) {
		t.Fatalf("node %s is not Ready: %+v", n.Name, node.Status.Conditions)
	}

	t.Run("PodAnswersOnItsIP", func(t *testing.T) {
		no := false
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default", Labels: map[string]string{"app": "echo"}},
			Spec: corev1.PodSpec{
				AutomountServiceAccountToken: &no,
				Containers: []corev1.Container{{
					Name: "echo", Image: EchoImage, ImagePullPolicy: corev1.PullNever,
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
						PeriodSeconds: 1,
					},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var ip string
		for deadline := time.Now().Add(time.Minute); ; {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if podReady(p) {
				ip = p.Status.PodIP
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod echo not Ready after a minute: phase %s, conditions %+v, containers %+v; events: %s", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses, podEvents(cs, p))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, r, _ := net.ParseCIDR(n.PodRange); !r.Contains(net.ParseIP(ip)) {
			t.Fatalf("pod IP %q is not in the node's pod range %s", ip, n.PodRange)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + "/")
		if err != nil {
			t.Fatalf("GET the pod on its IP %s: %v", ip, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "ferry-echo echo") {
			t.Fatalf("pod answered %q, want ferry-echo echo", body)
		}
	})

	t.Run("APIServerOnNodeAddress", func(t *testing.T) {
		first := firstServiceIP(t, n.ServiceRange)
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.ClusterIP != first {
			t.Fatalf("Service kubernetes has ClusterIP %s, want %s (the first address of %s)", svc.Spec.ClusterIP, first, n.ServiceRange)
		}
		_, port, _ := net.SplitHostPort(n.Host)
		want := net.JoinHostPort(n.IP, port)
		var got []string
		for deadline := time.Now().Add(30 * time.Second); ; {
			got = got[:0]
			slices, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
			if err != nil {
				t.Fatal(err)
			}
			for _, sl := range slices.Items {
				for _, ep := range sl.Endpoints {
					for _, a := range ep.Addresses {
						for _, p := range sl.Ports {
							got = append(got, net.JoinHostPort(a, fmt.Sprint(*p.Port)))
						}
					}
				}
			}
			if len(got) == 1 && got[0] == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Service kubernetes has endpoints %v, want only %s (the API server on the node's address)", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
		pemBytes, err := os.ReadFile(n.ca)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(pemBytes)
		if block == nil {
			t.Fatalf("%s holds no PEM certificate", n.ca)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range []string{n.IP, first} {
			if cert.VerifyHostname(ip) != nil {
				t.Errorf("the API server's certificate does not name %s; its IP SANs are %v", ip, cert.IPAddresses)
			}
		}
		if cert.VerifyHostname("kubernetes.default.svc") != nil {
			t.Errorf("the API server's certificate does not name kubernetes.default.svc; its DNS SANs are %v", cert.DNSNames)
		}
	})

	t.Run("PodReachesAPIServerThroughService", func(t *testing.T) {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		const image = "ferry.test/apiclient:1"
		if err := n.ImportGoImage(ctx, image, filepath.Join(root, "internal", "testenv", "testdata", "nodeimages", "apiclient")); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "apiclient", Namespace: "default"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "apiclient", Image: image, ImagePullPolicy: corev1.PullNever,
					Args: []string{"--want-user", "system:serviceaccount:default:default"},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; {
			p, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Status.Phase == corev1.PodSucceeded {
				break
			}
			if p.Status.Phase == corev1.PodFailed || time.Now().After(deadline) {
				t.Fatalf("pod apiclient is %s, want Succeeded (it reaches the API server at the kubernetes Service %s with its ServiceAccount token); containers %+v; log:\n%s\nevents: %s",
					p.Status.Phase, firstServiceIP(t, n.ServiceRange), p.Status.ContainerStatuses, podLog(n, p), podEvents(cs, p))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if log := podLog(n, pod); !strings.Contains(log, "user system:serviceaccount:default:default") {
			t.Fatalf("pod apiclient succeeded but its log does not show its ServiceAccount user:\n%s", log)
		}
	})

	t.Run("NodePortAnswersOnNodeAddress", func(t *testing.T) {
		svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo-nodeport"},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeNodePort,
				Selector: map[string]string{"app": "echo"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("http://%s/", net.JoinHostPort(n.IP, fmt.Sprint(svc.Spec.Ports[0].NodePort)))
		client := &http.Client{Timeout: 2 * time.Second}
		var last error
		// kube-proxy writes the Service's rules once its EndpointSlice names the Pod.
		for deadline := time.Now().Add(30 * time.Second); ; {
			resp, err := client.Get(url)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.HasPrefix(string(body), "ferry-echo echo") {
					break
				}
				err = fmt.Errorf("answered %s %q, want ferry-echo echo", resp.Status, body)
			}
			last = err
			if time.Now().After(deadline) {
				t.Fatalf("GET %s (the NodePort of Service echo-nodeport on the node's address): %v", url, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("ClusterIPIsUnreachable", func(t *testing.T) {
		svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "echo"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := svc.Spec.ClusterIP
		if _, r, _ := net.ParseCIDR(n.ServiceRange); !r.Contains(net.ParseIP(ip)) {
			t.Fatalf("ClusterIP %q is not in the service range %s", ip, n.ServiceRange)
		}
		start := time.Now()
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "80"), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("a connection to ClusterIP %s from the host succeeded; it must be unreachable (the service range's unreachable route)", ip)
		}
		if !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Fatalf("dial ClusterIP %s: %v; want EHOSTUNREACH from the unreachable route of %s (another error means some other route took the packet)", ip, err, n.ServiceRange)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("dial ClusterIP %s took %s; an unreachable route fails at once", ip, d)
		}
	})

	t.Run("StopUndoesEverything", func(t *testing.T) {
		dir := n.dir
		n.Stop()
		if out, _ := exec.Command("ip", "route", "show", "table", "main").Output(); strings.Contains(string(out), n.ServiceRange) || strings.Contains(string(out), n.PodRange) {
			t.Errorf("routes of the node are left after Stop:\n%s", out)
		}
		if out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output(); strings.Contains(string(out), n.IP+"/") {
			t.Errorf("the node address %s is left on lo after Stop:\n%s", n.IP, out)
		}
		if err := exec.Command("ip", "link", "show", n.bridge).Run(); err == nil {
			t.Errorf("bridge %s is left after Stop", n.bridge)
		}
		if left, _ := filepath.Glob(filepath.Join(cgroupFS, "*", n.Name)); len(left) > 0 {
			t.Errorf("cgroups left after Stop: %v", left)
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), " "+dir+"/") {
			t.Errorf("mounts under %s left after Stop", dir)
		}
		links, _ := filepath.Glob("/var/log/containers/*.log")
		for _, l := range links {
			if target, _ := os.Readlink(l); strings.HasPrefix(target, dir+"/") {
				t.Errorf("kubelet's log link %s -> %s left after Stop", l, target)
			}
		}
		if out, _ := exec.Command("pgrep", "-f", n.Socket).Output(); len(out) > 0 {
			t.Errorf("processes of the node's containerd left after Stop: %s", out)
		}
		out, err := exec.Command(n.nft, "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Errorf("nft list ruleset: %v: %s", err, out)
		}
		if strings.Contains(string(out), "kube-proxy") {
			t.Errorf("kube-proxy's nftables tables are left after Stop:\n%s", out)
		}
		f, err := os.Open(NodeLockPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Errorf("%s is still locked after Stop: %v", NodeLockPath, err)
		}
	})
}

// firstServiceIP is the first address of a service range: the kubernetes Service's ClusterIP.
func firstServiceIP(t *testing.T, serviceRange string) string {
	t.Helper()
	p, err := netip.ParsePrefix(serviceRange)
	if err != nil {
		t.Fatal(err)
	}
	return p.Masked().Addr().Next().String()
}

// podLog is what the containers of p wrote, read from the kubelet's pod log folder, for
// assertions and failure messages.
func podLog(n *Node, p *corev1.Pod) string {
	files, _ := filepath.Glob(filepath.Join(n.dir, "kubelet", "pod-logs", p.Namespace+"_"+p.Name+"_*", "*", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", f, err)
			continue
		}
		b.Write(data)
	}
	if b.Len() == 0 {
		return "(no log)"
	}
	return b.String()
}

// podEvents lists the events of p (why a sandbox or container failed), for failure messages.
func podEvents(cs kubernetes.Interface, p *corev1.Pod) string {
	evs, err := cs.CoreV1().Events(p.Namespace).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + p.Name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestNodeLock: a second holder of the node lock waits, says once that it waits and who holds
// it, gives up with the reason when its context ends, and takes the lock as soon as the first
// holder lets go.
func TestNodeLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.lock")
	first, err := lockNode(context.Background(), path, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }

	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	if f, err := lockNode(ctx, path, logf); err == nil {
		f.Close()
		t.Fatal("took the lock while another holder had it")
	} else if want := fmt.Sprintf("still held by another test node (pid %d)", os.Getpid()); !strings.Contains(err.Error(), want) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %q does not say %q with the context's error", err, want)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "waiting for "+path) {
		t.Fatalf("logged %q, want one line saying it waits for %s", logs, path)
	}

	logs = nil
	time.AfterFunc(300*time.Millisecond, func() { first.Close() })
	start := time.Now()
	second, err := lockNode(context.Background(), path, logf)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("took the lock after %s; the first holder let go after 300ms", d)
	}
	if len(logs) != 2 || !strings.Contains(logs[1], "took "+path) {
		t.Fatalf("logged %q, want the wait and the take", logs)
	}
}

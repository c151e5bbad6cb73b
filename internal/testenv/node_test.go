package testenv

import (
	"context"
	"errors"
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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// TestNodeRunsPods starts the real node: it registers Ready, a Pod running the locally built
// echo image becomes Ready and answers on its pod IP from the host, and a ClusterIP of the
// service range (no kube-proxy) fails at once as unreachable instead of leaving the machine.
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
			t.Fatalf("a connection to ClusterIP %s succeeded; with no kube-proxy it must be unreachable", ip)
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
	})
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

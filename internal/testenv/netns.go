package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// NetNS is a Linux network namespace joined to the host by one veth pair, with a firewall in
// it that lets out only TCP connections to the host ports given to Allow, and counts every
// other packet it drops. A process started in it (Command) can reach those ports and its own
// loopback, nothing else: there is a default route, so an attempt to reach anything else
// produces a packet, which the firewall counts (Counters) and drops.
type NetNS struct {
	// Name is the namespace's name (ip netns).
	Name string
	// HostIP is the host's end of the veth pair; NSIP is the namespace's.
	HostIP, NSIP string
	veth         string
}

// NewNetNS makes a namespace whose processes may open TCP connections to nothing but their
// own loopback and the HostIP ports let out with Allow. It needs root (CAP_NET_ADMIN), ip (iproute2) and nft; the test fails, not
// skips, without them. t.Cleanup deletes it.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("network namespace: needs root (CAP_NET_ADMIN) to run ip netns and nft")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("network namespace: %s not found (install iproute2 and nftables): %v", bin, err)
		}
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b)
	// A /30 in 10.200.0.0/13 picked at random, so concurrent tests do not collide.
	n := int(b[0])<<8 | int(b[1])
	base := fmt.Sprintf("10.%d.%d.%d", 200+(n>>14)%8, (n>>6)&0xff, (n&0x3f)<<2)
	ip := net.ParseIP(base).To4()
	ns := &NetNS{
		Name:   "ferry-" + id,
		veth:   "fy" + id,
		HostIP: net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String(),
		NSIP:   net.IPv4(ip[0], ip[1], ip[2], ip[3]+2).String(),
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", ns.veth).Run()
		_ = exec.Command("ip", "netns", "del", ns.Name).Run()
	})
	peer := ns.veth + "p"
	steps := [][]string{
		{"ip", "netns", "add", ns.Name},
		{"ip", "link", "add", ns.veth, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", ns.Name},
		{"ip", "addr", "add", ns.HostIP + "/30", "dev", ns.veth},
		{"ip", "link", "set", ns.veth, "up"},
		{"ip", "netns", "exec", ns.Name, "ip", "addr", "add", ns.NSIP + "/30", "dev", peer},
		{"ip", "netns", "exec", ns.Name, "ip", "link", "set", peer, "up"},
		{"ip", "netns", "exec", ns.Name, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", ns.Name, "ip", "route", "add", "default", "via", ns.HostIP},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("network namespace: %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	rules := `table inet ferrytest {
  counter allowed {}
  counter denied {}
  chain out {
    type filter hook output priority 0; policy accept;
    oif lo accept
    ct state established,related accept
    meta l4proto ipv6-icmp accept  # neighbour discovery as the link comes up: not a connection
    counter name denied drop
  }
}
`
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("network namespace: nft: %v\n%s", err, out)
	}
	return ns
}

// Allow lets processes in the namespace open TCP connections to HostIP:port.
func (n *NetNS) Allow(t testing.TB, port int) {
	t.Helper()
	// Two rules: the first counts new connections, the second lets the rest of them through.
	// insert puts each at the head of the chain, so they go in reverse.
	for _, rule := range []string{
		fmt.Sprintf("ip daddr %s tcp dport %d accept", n.HostIP, port),
		fmt.Sprintf("ip daddr %s tcp dport %d ct state new counter name allowed accept", n.HostIP, port),
	} {
		args := append([]string{"netns", "exec", n.Name, "nft", "insert", "rule", "inet", "ferrytest", "out"}, strings.Fields(rule)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("network namespace: allow port %d: %v\n%s", port, err, out)
		}
	}
}

// Command returns a command that runs name with args inside the namespace.
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Counters returns how many new connections the firewall let out (allowed) and how many
// packets it dropped because they went anywhere else (denied).
func (n *NetNS) Counters() (allowed, denied uint64, err error) {
	out, err := exec.Command("ip", "netns", "exec", n.Name, "nft", "-j", "list", "counters").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("nft list counters in %s: %w", n.Name, err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, fmt.Errorf("nft counters: %w", err)
	}
	found := 0
	for _, e := range doc.Nftables {
		if e.Counter == nil {
			continue
		}
		switch e.Counter.Name {
		case "allowed":
			allowed, found = e.Counter.Packets, found+1
		case "denied":
			denied, found = e.Counter.Packets, found+1
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("nft counters in %s: allowed and denied not both found in %s", n.Name, out)
	}
	return allowed, denied, nil
}

// Forwarder relays TCP connections from one address to another and counts them: it lets a
// namespace reach a server that listens on the host's loopback only.
type Forwarder struct {
	// Addr is where it listens.
	Addr        string
	ln          net.Listener
	target      string
	connections atomic.Int64
	wg          sync.WaitGroup
}

// NewForwarder listens on listenHost (any free port) and relays each connection to target.
// t.Cleanup stops it.
func NewForwarder(t testing.TB, listenHost, target string) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(listenHost, "0"))
	if err != nil {
		t.Fatalf("forwarder to %s: %v", target, err)
	}
	f := &Forwarder{Addr: ln.Addr().String(), ln: ln, target: target}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

// Port is the port the forwarder listens on.
func (f *Forwarder) Port() int {
	_, p, _ := net.SplitHostPort(f.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Connections is how many connections it has relayed.
func (f *Forwarder) Connections() int64 { return f.connections.Load() }

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.connections.Add(1)
		go f.relay(c)
	}
}

func (f *Forwarder) relay(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // a reset or closed connection ends the relay either way
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

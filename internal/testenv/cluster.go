package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is etcd plus kube-apiserver on loopback (a Node's API server is on the node's address
// instead): a Kubernetes control plane with no kubelet, so objects are stored and served but
// pods never run.
type Cluster struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same credentials.
	Kubeconfig string
	// Host is the API server's host:port.
	Host      string
	etcd      *process
	apiserver *process
	kcm       *process // kube-controller-manager, when started
	ca, saKey string   // the serving certificate and the service account signing key
}

// StartCluster starts etcd and kube-apiserver keeping their data under dir.
func StartCluster(ctx context.Context, dir string) (*Cluster, error) {
	return startCluster(ctx, dir, "10.0.0.0/24", "")
}

// startCluster is StartCluster with the API server's service (ClusterIP) range and the address
// it binds and advertises. With no address it is 127.0.0.1 and the kubernetes Service has no
// endpoint (a Service cannot point at loopback); the node passes its own address, which the
// Service's endpoint then names, so Pods reach the API server through its ClusterIP.
func startCluster(ctx context.Context, dir, serviceRange, address string) (*Cluster, error) {
	etcdBin, err := ToolPath("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := ToolPath("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd, err := retryStart(func() (*etcdServer, error) { return startEtcd(ctx, etcdBin, dir) })
	if err != nil {
		return nil, err
	}
	c, err := retryStart(func() (*Cluster, error) {
		return startAPIServer(ctx, apiBin, dir, etcd.url, serviceRange, address)
	})
	if err != nil {
		etcd.proc.stop()
		return nil, err
	}
	c.etcd = etcd.proc
	return c, nil
}

// Clientset returns a typed client for the cluster.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(c.Config)
}

// StartControllerManager runs kube-controller-manager against the cluster, which has no node:
// it writes the status of Deployments, ReplicaSets and the like, so a workload scaled to zero
// becomes Available (and health checks that read that status pass), while a Pod it creates is
// never scheduled or run. It stops with the cluster.
func (c *Cluster) StartControllerManager() error {
	if c.kcm != nil {
		return nil
	}
	bin, err := ToolPath("kube-controller-manager")
	if err != nil {
		return err
	}
	dir := filepath.Dir(c.Kubeconfig)
	kcm, err := startProcess("kube-controller-manager", bin, []string{
		"--kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--service-account-private-key-file", c.saKey,
		"--root-ca-file", c.ca,
		"--use-service-account-credentials=false",
		"--controllers", "*,-nodeipam,-nodelifecycle",
		"--flex-volume-plugin-dir", filepath.Join(dir, "kube-controller-manager-volume-plugins"),
	}, nil, dir)
	if err != nil {
		return err
	}
	// It exits at once on a bad flag: give it a moment and say so.
	select {
	case <-kcm.done:
		return fmt.Errorf("kube-controller-manager exited at start (%v):\n%s", kcm.waitErr, kcm.logTail())
	case <-time.After(time.Second):
	}
	c.kcm = kcm
	return nil
}

// Stop stops kube-controller-manager if started, the API server, then etcd.
func (c *Cluster) Stop() error {
	if c.kcm != nil {
		c.kcm.stop()
	}
	c.apiserver.stop()
	return c.etcd.stop()
}

type etcdServer struct {
	proc *process
	url  string
}

func startEtcd(ctx context.Context, bin, dir string) (*etcdServer, error) {
	client, err := freePort()
	if err != nil {
		return nil, err
	}
	peer, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "etcd-data")
	if err := os.RemoveAll(data); err != nil { // a failed attempt may have left a half-made member
		return nil, err
	}
	clientURL := "http://" + loopback(client)
	peerURL := "http://" + loopback(peer)
	args := []string{
		"--data-dir", data,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default=" + peerURL,
		"--unsafe-no-fsync", // test data: durability is not what is under test
		"--log-level", "warn",
	}
	p, err := startProcess("etcd", bin, args, nil, dir)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		return httpStatus(ctx, clientURL+"/health", http.StatusOK, nil)
	}); err != nil {
		p.stop()
		return nil, err
	}
	return &etcdServer{proc: p, url: clientURL}, nil
}

func startAPIServer(ctx context.Context, bin, dir, etcdURL, serviceRange, address string) (*Cluster, error) {
	if address == "" {
		address = "127.0.0.1"
	}
	port, err := freePortOn(address)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "apiserver-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	saKey, saPub, err := writeServiceAccountKeys(dir)
	if err != nil {
		return nil, err
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",ferry-admin,ferry-admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	host := net.JoinHostPort(address, strconv.Itoa(port))
	// The serving certificate, made by kube-apiserver itself in certDir, names the advertised
	// address and the first address of the service range (the kubernetes Service's ClusterIP)
	// besides kubernetes.default.svc and its shorter names.
	args := []string{
		"--etcd-servers", etcdURL,
		"--bind-address", address,
		"--advertise-address", address,
		"--secure-port", fmt.Sprint(port),
		"--cert-dir", certDir,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", serviceRange,
	}
	if net.ParseIP(address).IsLoopback() {
		// The kubernetes Service cannot point at a loopback address; a cluster without a node
		// needs no endpoint for it.
		args = append(args, "--endpoint-reconciler-type", "none")
	}
	p, err := startProcess("kube-apiserver", bin, args, nil, dir)
	if err != nil {
		return nil, err
	}
	// The serving certificate is made by the API server at start; poll without verifying it,
	// then trust exactly that certificate.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := p.waitReady(ctx, 90*time.Second, func(ctx context.Context) error {
		return httpStatus(ctx, "https://"+host+"/readyz", http.StatusOK, insecure, "Authorization", "Bearer "+token)
	}); err != nil {
		p.stop()
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("kube-apiserver: read serving certificate: %w", err)
	}
	cfg := &rest.Config{
		Host:            "https://" + host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS:             100,
		Burst:           200,
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, cfg); err != nil {
		p.stop()
		return nil, err
	}
	return &Cluster{Config: cfg, Kubeconfig: kubeconfig, Host: host, apiserver: p, ca: filepath.Join(certDir, "apiserver.crt"), saKey: saKey}, nil
}

func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ferry-test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["ferry-admin"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["ferry-test"] = &clientcmdapi.Context{Cluster: "ferry-test", AuthInfo: "ferry-admin"}
	kc.CurrentContext = "ferry-test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// writeServiceAccountKeys writes the RSA key pair the API server signs service account tokens with.
func writeServiceAccountKeys(dir string) (keyPath, pubPath string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

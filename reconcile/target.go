package reconcile

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/ssa"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// target is the cluster a Kustomization's objects or a HelmRelease's release go to: the one
// sync runs in, or the one whose kubeconfig the object's spec.kubeConfig.secretRef names.
// Sources, dependencies, substitution and values are always read in the cluster sync runs in
// (where the object is), as Flux does.
type target struct {
	// name is "" for the cluster sync runs in, else "the cluster of kubeconfig Secret
	// <namespace>/<name>", for messages.
	name    string
	cfg     *rest.Config
	client  client.Client
	manager *ssa.ResourceManager
}

// remote reports whether t is another cluster than the one sync runs in.
func (t *target) remote() bool { return t.name != "" }

// in returns " in <t.name>" for a remote target, for messages, else "".
func (t *target) in() string {
	if t.remote() {
		return " in " + t.name
	}
	return ""
}

// errKubeConfig marks a spec.kubeConfig that cannot be used (the Secret is missing or its
// kubeconfig is refused): nothing was done on any cluster.
var errKubeConfig = errors.New("kubeconfig")

// local is the cluster sync runs in.
func (r *Reconciler) local() *target {
	return &target{cfg: r.restCfg, client: r.client, manager: r.manager}
}

// targetOf returns the cluster an object in namespace ns with spec.kubeConfig ref applies to:
// the local one when ref is nil, else the one the kubeconfig of the Secret ref names (key
// secretRef.key, else "value", else "value.yaml", as Flux reads it) reaches. Clients are
// kept per Secret and rebuilt when its kubeconfig changes.
func (r *Reconciler) targetOf(ctx context.Context, ns string, ref *meta.KubeConfigReference) (*target, error) {
	if ref == nil {
		return r.local(), nil
	}
	if ref.ConfigMapRef != nil {
		return nil, fmt.Errorf("%w: spec.kubeConfig.configMapRef (a cloud provider's workload identity) is not supported: sync reaches other clusters only with a kubeconfig in spec.kubeConfig.secretRef", errKubeConfig)
	}
	if ref.SecretRef == nil || ref.SecretRef.Name == "" {
		return nil, fmt.Errorf("%w: spec.kubeConfig names no secretRef", errKubeConfig)
	}
	key := types.NamespacedName{Namespace: ns, Name: ref.SecretRef.Name}
	name := "the cluster of kubeconfig Secret " + key.String()
	var s corev1.Secret
	if err := r.client.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: Secret %s not found: create it with the remote cluster's kubeconfig under key \"value\"", errKubeConfig, key)
		}
		return nil, fmt.Errorf("read kubeconfig Secret %s: %w", key, err)
	}
	var data []byte
	switch {
	case ref.SecretRef.Key != "":
		data = s.Data[ref.SecretRef.Key]
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: Secret %s has no key %q", errKubeConfig, key, ref.SecretRef.Key)
		}
	case len(s.Data["value"]) > 0:
		data = s.Data["value"]
	case len(s.Data["value.yaml"]) > 0:
		data = s.Data["value.yaml"]
	default:
		return nil, fmt.Errorf("%w: Secret %s has neither key \"value\" nor \"value.yaml\"", errKubeConfig, key)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	r.mu.Lock()
	cached, ok := r.targets[key]
	r.mu.Unlock()
	if ok && cached.sum == sum {
		return cached.target, nil
	}
	cfg, err := RemoteConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w: Secret %s: %v", errKubeConfig, key, err)
	}
	cfg.QPS, cfg.Burst = r.restCfg.QPS, r.restCfg.Burst
	c, err := client.New(cfg, client.Options{Scheme: r.client.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", name, err)
	}
	poller := polling.NewStatusPoller(c, c.RESTMapper(), polling.Options{})
	t := &target{name: name, cfg: cfg, client: c, manager: ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: OwnerGroup})}
	r.mu.Lock()
	if r.targets == nil {
		r.targets = map[types.NamespacedName]cachedTarget{}
	}
	r.targets[key] = cachedTarget{sum: sum, target: t}
	r.mu.Unlock()
	return t, nil
}

// cachedTarget is a remote target and the digest of the kubeconfig it was made from.
type cachedTarget struct {
	sum    string
	target *target
}

// RemoteConfig parses a kubeconfig from a Secret (a tenant may have written it) into the REST
// config of its current context, refusing what would make sync act beyond talking to that
// API server with the credentials written in it: exec plugins and auth providers (programs
// run, or tokens fetched, as the agent), paths to files (the agent's own files, such as its
// ServiceAccount token, would be sent), proxies, impersonation, plain HTTP and skipped TLS
// verification.
func RemoteConfig(data []byte) (*rest.Config, error) {
	kc, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("parse the kubeconfig: %v", err)
	}
	ctxName := kc.CurrentContext
	if ctxName == "" {
		return nil, errors.New("the kubeconfig has no current-context: set it to the context of the remote cluster")
	}
	kctx, ok := kc.Contexts[ctxName]
	if !ok || kctx == nil {
		return nil, fmt.Errorf("the kubeconfig's current-context %q is not among its contexts", ctxName)
	}
	cl, ok := kc.Clusters[kctx.Cluster]
	if !ok || cl == nil {
		return nil, fmt.Errorf("context %q: cluster %q is not in the kubeconfig", ctxName, kctx.Cluster)
	}
	au, ok := kc.AuthInfos[kctx.AuthInfo]
	if !ok || au == nil {
		return nil, fmt.Errorf("context %q: user %q is not in the kubeconfig", ctxName, kctx.AuthInfo)
	}
	u, err := url.Parse(cl.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("cluster %q: server %q is not an https:// URL", kctx.Cluster, cl.Server)
	}
	var refused []string
	refuse := func(field, why string) { refused = append(refused, field+" ("+why+")") }
	if cl.InsecureSkipTLSVerify {
		refuse("clusters[].cluster.insecure-skip-tls-verify", "give certificate-authority-data instead")
	}
	if cl.CertificateAuthority != "" {
		refuse("clusters[].cluster.certificate-authority", "a path: give certificate-authority-data instead")
	}
	if cl.ProxyURL != "" {
		refuse("clusters[].cluster.proxy-url", "proxies are not supported")
	}
	if au.Exec != nil {
		refuse("users[].user.exec", "sync runs no program a kubeconfig names: give a token or a client certificate")
	}
	if au.AuthProvider != nil {
		refuse("users[].user.auth-provider", "give a token or a client certificate")
	}
	if au.TokenFile != "" {
		refuse("users[].user.tokenFile", "a path: give token instead")
	}
	if au.ClientCertificate != "" || au.ClientKey != "" {
		refuse("users[].user.client-certificate/client-key", "paths: give client-certificate-data and client-key-data instead")
	}
	if au.Impersonate != "" || au.ImpersonateUID != "" || len(au.ImpersonateGroups) > 0 || len(au.ImpersonateUserExtra) > 0 {
		refuse("users[].user.as", "name the account to act as with spec.serviceAccountName")
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("the kubeconfig is refused: %s", strings.Join(refused, "; "))
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*kc, ctxName, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %q: %v", ctxName, err)
	}
	return cfg, nil
}

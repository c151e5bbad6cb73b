package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/deploy"
	"github.com/ferry-gitops/ferry/internal/buildinfo"
	"github.com/ferry-gitops/ferry/verify"
)

// installOptions are the flags of `sync install`.
type installOptions struct {
	config    string
	keys      []string
	image     string
	cacheSize string
	namespace string
	crds      bool
	// nodePort, when not 0, makes the ferry Service a NodePort Service with the registry port on
	// this nodePort: the nodes' container runtimes reach Ferry at http://<node address>:nodePort.
	nodePort int
}

// The defaults of `sync install`, and what the base's Deployment and Service expose.
const (
	installNamespace     = "ferry-system"
	installCacheSize     = "20Gi"
	installRegistryPort  = "5000"
	installHealthPort    = "8080"
	installConfigDigest  = "ferry.dev/config-digest"
	installSyncConfigAPI = "ferry.dev/v1alpha1"
)

// The range kube-apiserver allots NodePorts from unless its --service-node-port-range says
// otherwise: --registry-node-port must be in it.
const installNodePortMin, installNodePortMax = 30000, 32767

func installCommand() *cobra.Command {
	var o installOptions
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests that install the sync agent in a cluster, for kubectl apply",
		Long: `install prints, as multi-document YAML, everything the sync agent needs in a cluster: its
namespace, ServiceAccount and RBAC, the cache's PersistentVolumeClaim, the Deployment that runs
'sync run', the Service of its registry and health ports, and two ConfigMaps made from your files:
ferry-sync-config (the agent's configuration, --config) and ferry-sync-keys (the public keys
bundles must be signed by, --key, mounted in /etc/ferry/keys). With --crds, Ferry's
CustomResourceDefinitions come first.

It renders the kustomize base in deploy/ (embedded in this binary) and contacts nothing: pipe the
output to 'kubectl apply --server-side -f -', or keep it in Git. See docs/install.md.`,
		Example: `  sync install --config config.yaml --key cosign.pub --crds | kubectl apply --server-side -f -
  sync install --config config.yaml --key ops.pub --key release.pub --image registry.example/ferry/sync:v1.2.0 --cache-size 100Gi`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := renderInstall(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "the agent's configuration file (kind SyncConfig), stored in the ConfigMap ferry-sync-config")
	cmd.Flags().StringSliceVar(&o.keys, "key", nil, "a public key bundles must be signed by (PEM; repeat for several), stored in the ConfigMap ferry-sync-keys")
	cmd.Flags().StringVar(&o.image, "image", "", "the agent's image, with a tag or a digest (default "+deploy.ImageName+":<this build's version>)")
	cmd.Flags().StringVar(&o.cacheSize, "cache-size", installCacheSize, "the size the cache's PersistentVolumeClaim requests")
	cmd.Flags().StringVar(&o.namespace, "namespace", installNamespace, "the namespace the agent runs in")
	cmd.Flags().BoolVar(&o.crds, "crds", false, "print Ferry's CustomResourceDefinitions first")
	cmd.Flags().IntVar(&o.nodePort, "registry-node-port", 0, fmt.Sprintf("make the ferry Service a NodePort Service whose registry port is this nodePort (%d-%d), so nodes' container runtimes pull from http://<node address>:PORT; 0 keeps it ClusterIP", installNodePortMin, installNodePortMax))
	return cmd
}

// renderInstall checks the options and renders the manifests.
func renderInstall(o installOptions) ([]byte, error) {
	if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
		return nil, fmt.Errorf("--namespace %q: %s", o.namespace, strings.Join(errs, "; "))
	}
	size, err := resource.ParseQuantity(o.cacheSize)
	if err != nil || size.Sign() <= 0 {
		return nil, fmt.Errorf("--cache-size %q: want a positive quantity such as 50Gi", o.cacheSize)
	}
	if o.nodePort != 0 && (o.nodePort < installNodePortMin || o.nodePort > installNodePortMax) {
		return nil, fmt.Errorf("--registry-node-port %d: a nodePort is in %d-%d (the API server's default --service-node-port-range); give one of those, or 0 to keep the Service ClusterIP", o.nodePort, installNodePortMin, installNodePortMax)
	}
	image := o.image
	if image == "" {
		image = deploy.ImageName + ":" + deploy.ImageTag(buildinfo.Get().Version)
	}
	img, err := installImage(image)
	if err != nil {
		return nil, err
	}
	if len(o.keys) == 0 {
		return nil, errors.New("--key: give the public key(s) bundles must be signed by")
	}
	keys := map[string][]byte{}
	for _, k := range o.keys {
		if _, err := verify.LoadPublicKey(k); err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		base := filepath.Base(k)
		if errs := validation.IsConfigMapKey(base); len(errs) > 0 {
			return nil, fmt.Errorf("--key %s: the file name %q cannot be a ConfigMap key: %s", k, base, strings.Join(errs, "; "))
		}
		if _, dup := keys[base]; dup {
			return nil, fmt.Errorf("--key %s: another key file is also named %q; they would both be %s/%s", k, base, deploy.KeysDir, base)
		}
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		keys[base] = b
	}
	if o.config == "" {
		return nil, errors.New("--config: give the agent's configuration file (kind SyncConfig)")
	}
	config, err := os.ReadFile(o.config)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if err := checkInstallConfig(config, keys, o.namespace); err != nil {
		return nil, fmt.Errorf("--config %s: %w", o.config, err)
	}

	fsys := filesys.MakeFsInMemory()
	if err := fs.WalkDir(deploy.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := deploy.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return fsys.WriteFile(path.Join("/base", p), b)
	}); err != nil {
		return nil, fmt.Errorf("embedded manifests: %w", err)
	}
	files := map[string][]byte{"/install/" + deploy.ConfigFileName: config}
	var keySources []string
	for _, base := range installSortedKeys(keys) {
		files["/install/keys/"+base] = keys[base]
		keySources = append(keySources, base+"=keys/"+base)
	}
	patches := []map[string]any{
		{
			"target": map[string]string{"kind": "PersistentVolumeClaim", "name": "ferry-cache"},
			"patch":  fmt.Sprintf(`[{"op": "replace", "path": "/spec/resources/requests/storage", "value": %q}]`, size.String()),
		},
		{
			"target": map[string]string{"kind": "Deployment", "name": "ferry-sync"},
			"patch": fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ferry-sync\nspec:\n  template:\n    metadata:\n      annotations:\n        %s: %q\n",
				installConfigDigest, installDigest(config, keys)),
		},
	}
	if o.nodePort != 0 {
		// The registry port is the Service's first port (deploy/service.yaml); the patch's
		// "test" op makes the render fail, rather than expose another port, if that changes.
		patches = append(patches, map[string]any{
			"target": map[string]string{"kind": "Service", "name": "ferry"},
			"patch": fmt.Sprintf(`[{"op": "replace", "path": "/spec/type", "value": "NodePort"}, {"op": "test", "path": "/spec/ports/0/name", "value": "registry"}, {"op": "add", "path": "/spec/ports/0/nodePort", "value": %d}]`,
				o.nodePort),
		})
	}
	kust := map[string]any{
		"apiVersion":   kustypes.KustomizationVersion,
		"kind":         kustypes.KustomizationKind,
		"resources":    []string{"../base"},
		"transformers": []string{"namespace.yaml"},
		"generatorOptions": map[string]any{
			// Stable names: the Deployment mounts ferry-sync-config and ferry-sync-keys, and a
			// change rolls the pod through the config digest annotation below instead.
			"disableNameSuffixHash": true,
			"labels":                map[string]string{"app.kubernetes.io/name": "ferry-sync", "app.kubernetes.io/part-of": "ferry"},
		},
		"configMapGenerator": []map[string]any{
			{"name": deploy.ConfigMapName, "files": []string{deploy.ConfigFileName}},
			{"name": deploy.KeysConfigMapName, "files": keySources},
		},
		"images":  []map[string]string{img},
		"patches": patches,
	}
	// The namespace transformer, with the ServiceAccount subjects of the bindings moved too
	// (the `namespace:` field moves only subjects named "default").
	ns := map[string]any{
		"apiVersion":             "builtin",
		"kind":                   "NamespaceTransformer",
		"metadata":               map[string]string{"name": "ferry-namespace", "namespace": o.namespace},
		"setRoleBindingSubjects": "allServiceAccounts",
		"fieldSpecs":             []map[string]any{{"path": "metadata/name", "kind": "Namespace", "create": true}},
	}
	for p, v := range map[string]any{"/install/kustomization.yaml": kust, "/install/namespace.yaml": ns} {
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, err
		}
		files[p] = b
	}
	for p, b := range files {
		if err := fsys.WriteFile(p, b); err != nil {
			return nil, err
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy // namespace, CRDs, RBAC, ConfigMaps, ..., then the Deployment
	opts.LoadRestrictions = kustypes.LoadRestrictionsRootOnly
	opts.PluginConfig = kustypes.DisabledPluginConfig()
	resMap, err := krusty.MakeKustomizer(opts).Run(fsys, "/install")
	if err != nil {
		return nil, fmt.Errorf("render the manifests: %w", err)
	}
	rendered, err := resMap.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("render the manifests: %w", err)
	}
	var out bytes.Buffer
	if o.crds {
		for _, crd := range api.CRDs() {
			out.WriteString("---\n")
			out.Write(bytes.TrimPrefix(bytes.TrimSpace(crd), []byte("---\n")))
			out.WriteString("\n")
		}
	}
	out.WriteString("---\n")
	out.Write(rendered)
	return out.Bytes(), nil
}

// installImage checks an image reference and returns the kustomize images entry that puts it
// in place of the base's placeholder.
func installImage(ref string) (map[string]string, error) {
	img := map[string]string{"name": deploy.ImageName}
	repo, dig, hasDigest := strings.Cut(ref, "@")
	if hasDigest {
		img["digest"] = dig
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		img["newTag"] = repo[i+1:]
		repo = repo[:i]
	} else if !hasDigest {
		return nil, fmt.Errorf("--image %q: give a tag or a digest (host/repository:tag or host/repository@sha256:…)", ref)
	}
	img["newName"] = repo
	// Strict: the registry is named, as nodes need it; nothing is defaulted.
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return nil, fmt.Errorf("--image %q: %w", ref, err)
	}
	return img, nil
}

// installDigest is a digest of the configuration and keys: put on the pod template, it rolls
// the pod when either changes.
func installDigest(config []byte, keys map[string][]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "config.yaml %d\n", len(config))
	h.Write(config)
	for _, k := range installSortedKeys(keys) {
		fmt.Fprintf(h, "key %s %d\n", k, len(keys[k]))
		h.Write(keys[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func installSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkInstallConfig is a structural check of the agent's configuration, not a full
// validation (the agent validates its configuration when it loads it): the file is a YAML
// mapping of apiVersion ferry.dev/v1alpha1, kind SyncConfig, and what it says agrees with
// the manifests: the cache is on the volume mounted at /var/lib/ferry, every key it pins is
// one of the --key files (mounted in /etc/ferry/keys), the leader election Lease is in the
// install namespace, and the registry and health listeners are on the ports the Deployment and
// the Service expose.
func checkInstallConfig(b []byte, keys map[string][]byte, namespace string) error {
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	if cfg == nil {
		return errors.New("empty; want a SyncConfig")
	}
	if v, _ := cfg["apiVersion"].(string); v != installSyncConfigAPI {
		return fmt.Errorf("apiVersion %q, want %s", cfg["apiVersion"], installSyncConfigAPI)
	}
	if k, _ := cfg["kind"].(string); k != "SyncConfig" {
		return fmt.Errorf("kind %q, want SyncConfig", cfg["kind"])
	}
	if c, ok := cfg["cache"]; ok {
		s, _ := c.(string)
		if p := path.Clean(s); !path.IsAbs(s) || (p != deploy.CacheMount && !strings.HasPrefix(p, deploy.CacheMount+"/")) {
			return fmt.Errorf("cache %q: the installed agent keeps its cache on the volume mounted at %s (e.g. %s)", c, deploy.CacheMount, defaultCache)
		}
	}
	list, ok := cfg["keys"].([]any)
	if !ok || len(list) == 0 {
		return fmt.Errorf("keys: pin the public keys bundles must be signed by, as paths in %s: %s", deploy.KeysDir, installKeyPaths(keys))
	}
	for i, e := range list {
		m, _ := e.(map[string]any)
		p, ok := m["path"].(string)
		if !ok {
			continue // a key given some other way is the agent's to check
		}
		if path.Dir(path.Clean(p)) != deploy.KeysDir || keys[path.Base(p)] == nil {
			return fmt.Errorf("keys[%d].path %q: the installed agent has the --key files, and only them, in %s: %s", i, p, deploy.KeysDir, installKeyPaths(keys))
		}
	}
	if le, _ := cfg["leaderElection"].(map[string]any); le != nil {
		if ns, ok := le["namespace"].(string); ok && ns != "" && ns != namespace {
			return fmt.Errorf("leaderElection.namespace %q: the agent is installed in %q; its Lease belongs there", ns, namespace)
		}
	}
	for _, l := range []struct{ field, port string }{{"serve", installRegistryPort}, {"health", installHealthPort}} {
		m, _ := cfg[l.field].(map[string]any)
		addr, ok := m["listen"].(string)
		if !ok {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port != l.port {
			return fmt.Errorf("%s.listen %q: the Deployment and the Service expose port %s for it (e.g. \":%s\")", l.field, addr, l.port, l.port)
		}
	}
	return nil
}

func installKeyPaths(keys map[string][]byte) string {
	var paths []string
	for _, k := range installSortedKeys(keys) {
		paths = append(paths, path.Join(deploy.KeysDir, k))
	}
	return strings.Join(paths, ", ")
}

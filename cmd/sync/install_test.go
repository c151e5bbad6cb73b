package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ferry-gitops/ferry/deploy"
	"github.com/ferry-gitops/ferry/internal/buildinfo"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

const installTestConfig = `apiVersion: ferry.dev/v1alpha1
kind: SyncConfig
cache: /var/lib/ferry/cache
keys: [{path: /etc/ferry/keys/ops.pub}, {path: /etc/ferry/keys/release.pub}]
threshold: 1
sources: [{dir: /var/lib/ferry/drop}]
retention: {keep: 3}
intervals: {poll: 10s, reconcile: 1m}
serve: {listen: ":5000"}
health: {listen: ":8080"}
kubeconfig: ""
installCRDs: true
leaderElection: {enabled: true, namespace: NAMESPACE, name: ferry-sync}
`

// installFluxCRDs are the CRDs `sync install --crds` renders, in its order (the file names of
// api/crds): the Flux kinds sync reconciles.
var installFluxCRDs = []string{
	"helmreleases.helm.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io",
	"artifactgenerators.source.extensions.fluxcd.io", "externalartifacts.source.toolkit.fluxcd.io",
	"gitrepositories.source.toolkit.fluxcd.io", "helmcharts.source.toolkit.fluxcd.io",
	"helmrepositories.source.toolkit.fluxcd.io", "ocirepositories.source.toolkit.fluxcd.io",
}

// installTestKey writes a fresh ECDSA P-256 public key, as cosign.pub holds, to dir/name.
func installTestKey(t *testing.T, dir, name string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// installTestFile writes content to dir/name and returns its path.
func installTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runInstall runs `sync install` with args and returns what it printed.
func runInstall(args ...string) (string, error) {
	cmd := installCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// installParseDocs decodes every document of a multi-document YAML stream, failing the test on any
// that is not a Kubernetes object.
func installParseDocs(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("document %d: %v", len(objs), err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			t.Fatalf("document %d is no object: %v", len(objs), m)
		}
		objs = append(objs, u)
	}
	return objs
}

func installObjectIDs(objs []*unstructured.Unstructured) []string {
	var ids []string
	for _, o := range objs {
		id := o.GetKind() + "/" + o.GetName()
		if o.GetNamespace() != "" {
			id = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		}
		ids = append(ids, id)
	}
	return ids
}

// The rendered manifests, CRDs included, apply with stock `kubectl apply --server-side` to a
// real API server, twice, without a Pod Security warning; the Deployment runs the given image
// with the mounts and security context the agent needs, the ConfigMaps hold the files given,
// and the RBAC gives the agent what it needs itself, and, without the cluster-admin binding
// (docs/install.md), no more.
func TestInstallAppliesToAPIServer(t *testing.T) {
	dir := t.TempDir()
	const ns = "ferry-test"
	const image = "registry.example:5000/ferry/sync:v1.2.3@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	config := installTestFile(t, dir, "config.yaml", strings.ReplaceAll(installTestConfig, "NAMESPACE", ns))
	ops, release := installTestKey(t, dir, "ops.pub"), installTestKey(t, dir, "release.pub")
	out, err := runInstall("--config", config, "--key", ops, "--key", release, "--image", image,
		"--namespace", ns, "--cache-size", "50Gi", "--crds")
	if err != nil {
		t.Fatal(err)
	}
	objs := installParseDocs(t, out)
	var want []string
	for _, c := range installFluxCRDs {
		want = append(want, "CustomResourceDefinition/"+c)
	}
	want = append(want,
		"Namespace/"+ns, "ServiceAccount/"+ns+"/ferry-sync", "ClusterRole/ferry-sync",
		"ClusterRoleBinding/ferry-sync", "ClusterRoleBinding/ferry-sync-cluster-admin",
		"ConfigMap/"+ns+"/ferry-sync-config", "ConfigMap/"+ns+"/ferry-sync-keys",
		"Service/"+ns+"/ferry", "PersistentVolumeClaim/"+ns+"/ferry-cache", "Deployment/"+ns+"/ferry-sync",
	)
	if got := installObjectIDs(objs); !slices.Equal(got, want) {
		t.Fatalf("rendered\n  %v\nwant\n  %v", got, want)
	}
	manifests := installTestFile(t, dir, "install.yaml", out)

	cluster := testenv.NewCluster(t)
	kube := []string{"--kubeconfig", cluster.Kubeconfig}
	for i := range 2 {
		r := testenv.Run(t, dir, nil, "kubectl", append(kube, "apply", "--server-side", "-f", manifests)...)
		if r.Err != nil {
			t.Fatalf("kubectl apply --server-side (%d): %v\n%s%s", i+1, r.Err, r.Stdout, r.Stderr)
		}
		if strings.Contains(r.Stderr, "Warning") {
			t.Fatalf("kubectl apply warned:\n%s", r.Stderr)
		}
		if n := strings.Count(r.Stdout, "serverside-applied"); n != len(objs) {
			t.Fatalf("kubectl apply --server-side (%d) applied %d objects, rendered %d:\n%s", i+1, n, len(objs), r.Stdout)
		}
	}

	ctx := context.Background()
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ext, err := apiextensions.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range installFluxCRDs {
		if err := installWaitEstablished(ctx, ext, name); err != nil {
			t.Fatal(err)
		}
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "ferry-sync", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	installCheckDeployment(t, dep, image)

	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "ferry-sync-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(config); cm.Data["config.yaml"] != string(b) {
		t.Errorf("ConfigMap ferry-sync-config holds %q", cm.Data)
	}
	keys, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "ferry-sync-keys", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"ops.pub": ops, "release.pub": release} {
		if b, _ := os.ReadFile(p); keys.Data[name] != string(b) {
			t.Errorf("ConfigMap ferry-sync-keys: %s = %q", name, keys.Data[name])
		}
	}
	if len(keys.Data) != 2 {
		t.Errorf("ConfigMap ferry-sync-keys holds %d keys, want 2", len(keys.Data))
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "ferry-cache", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("50Gi")) != 0 || !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("PVC ferry-cache: %s %v", got.String(), pvc.Spec.AccessModes)
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "ferry", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["registry"] != 5000 || ports["http-metrics"] != 8080 || len(ports) != 2 {
		t.Errorf("Service ferry ports %v", ports)
	}

	// The agent's own rights, and everything through cluster-admin.
	sa := "system:serviceaccount:" + ns + ":ferry-sync"
	own := []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "ferry-sync"},
		{Namespace: "team-a", Verb: "create", Group: "events.k8s.io", Resource: "events"},
		{Namespace: "team-a", Verb: "create", Resource: "events"},
		{Namespace: ns, Verb: "patch", Resource: "configmaps", Name: "ferry-sync-status"},
		{Namespace: "team-a", Verb: "create", Resource: "secrets"},
		{Namespace: "team-a", Verb: "impersonate", Resource: "serviceaccounts", Name: "deployer"},
		{Namespace: "team-a", Verb: "patch", Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations", Subresource: "status"},
		{Namespace: "team-a", Verb: "update", Group: "helm.toolkit.fluxcd.io", Resource: "helmreleases", Subresource: "finalizers"},
		{Namespace: "team-a", Verb: "patch", Group: "source.toolkit.fluxcd.io", Resource: "gitrepositories", Subresource: "status"},
		{Namespace: "team-a", Verb: "patch", Group: "source.toolkit.fluxcd.io", Resource: "helmrepositories", Subresource: "status"},
		{Namespace: "team-a", Verb: "patch", Group: "source.extensions.fluxcd.io", Resource: "artifactgenerators", Subresource: "status"},
		{Namespace: "team-a", Verb: "patch", Group: "source.toolkit.fluxcd.io", Resource: "externalartifacts", Subresource: "status"},
		{Verb: "patch", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "kustomizations.kustomize.toolkit.fluxcd.io"},
	}
	broad := authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "create", Group: "apps", Resource: "deployments"}
	for _, a := range append(own, broad) {
		if !installAllowed(t, cs, sa, ns, a) {
			t.Errorf("%s may not %s %s/%s %s in %q", sa, a.Verb, a.Resource, a.Subresource, a.Name, a.Namespace)
		}
	}
	// Narrowed as docs/install.md says: the agent keeps its own rights, and loses the rest.
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, "ferry-sync-cluster-admin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range own {
		if !installAllowed(t, cs, sa, ns, a) {
			t.Errorf("narrowed: %s may not %s %s/%s %s in %q", sa, a.Verb, a.Resource, a.Subresource, a.Name, a.Namespace)
		}
	}
	if installAllowed(t, cs, sa, ns, broad) {
		t.Errorf("narrowed: %s may still create deployments in team-a", sa)
	}
	t.Logf("applied %d objects twice with kubectl --server-side; Deployment %s/ferry-sync runs %s; RBAC checked with and without cluster-admin", len(objs), ns, image)
}

// installAllowed asks the API server whether the ServiceAccount user sa (of namespace ns) may do a.
func installAllowed(t *testing.T, cs *kubernetes.Clientset, sa, ns string, a authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               sa,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &a,
	}}
	res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status.Allowed
}

func installWaitEstablished(ctx context.Context, ext *apiextensions.Clientset, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("CRD "+name+" not established"), err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// installCheckDeployment checks what the agent's pod needs: the image, the arguments, the downward
// API, the ports and probes, the mounts, the restricted security context and the rollout.
func installCheckDeployment(t *testing.T, dep *appsv1.Deployment, image string) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != image {
		t.Errorf("image %q, want %q", c.Image, image)
	}
	if want := []string{"run", "--config", "/etc/ferry/config.yaml"}; !slices.Equal(c.Args, want) {
		t.Errorf("args %v, want %v", c.Args, want)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("env %v", env)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["registry"] != 5000 || ports["http-metrics"] != 8080 {
		t.Errorf("ports %v", ports)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "http-metrics" {
			t.Errorf("probe %+v, want GET %s on http-metrics", probe, want)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.Volume{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = volumes[m.Name]
	}
	if v := mounts["/var/lib/ferry"].PersistentVolumeClaim; v == nil || v.ClaimName != "ferry-cache" {
		t.Errorf("/var/lib/ferry: %+v", mounts["/var/lib/ferry"])
	}
	if v := mounts["/etc/ferry"].ConfigMap; v == nil || v.Name != "ferry-sync-config" {
		t.Errorf("/etc/ferry: %+v", mounts["/etc/ferry"])
	}
	if v := mounts["/etc/ferry/keys"].ConfigMap; v == nil || v.Name != "ferry-sync-keys" {
		t.Errorf("/etc/ferry/keys: %+v", mounts["/etc/ferry/keys"])
	}
	if mounts["/tmp"].EmptyDir == nil {
		t.Errorf("/tmp: %+v", mounts["/tmp"])
	}
	sc := c.SecurityContext
	if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		ptr.Deref(sc.AllowPrivilegeEscalation, true) || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context %+v", sc)
	}
	if psc := spec.SecurityContext; psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) != 65532 || ptr.Deref(psc.FSGroup, 0) != 65532 {
		t.Errorf("pod security context %+v", psc)
	}
	if spec.ServiceAccountName != "ferry-sync" {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	ru := dep.Spec.Strategy.RollingUpdate
	if dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxSurge.String() != "1" || ru.MaxUnavailable.String() != "0" {
		t.Errorf("strategy %+v", dep.Spec.Strategy)
	}
	if ptr.Deref(dep.Spec.Replicas, 0) != 1 {
		t.Errorf("replicas %v", dep.Spec.Replicas)
	}
	if a := spec.Affinity; a == nil || a.PodAffinity == nil || len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 ||
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("affinity %+v", a)
	}
	if !strings.HasPrefix(dep.Spec.Template.Annotations[installConfigDigest], "sha256:") {
		t.Errorf("pod annotations %v", dep.Spec.Template.Annotations)
	}
}

// Without --image, --namespace and --cache-size: this build's version as the tag, ferry-system,
// 20Gi, and no CRDs. The same files render the same bytes; a changed key changes the digest
// annotation that rolls the pod.
func TestInstallDefaults(t *testing.T) {
	dir := t.TempDir()
	config := installTestFile(t, dir, "config.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: /etc/ferry/keys/cosign.pub}]\n")
	key := installTestKey(t, dir, "cosign.pub")
	out, err := runInstall("--config", config, "--key", key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := runInstall("--config", config, "--key", key)
	if err != nil {
		t.Fatal(err)
	}
	if out != again {
		t.Fatal("two renders of the same files differ")
	}
	objs := installParseDocs(t, out)
	var digest string
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "CustomResourceDefinition") {
			t.Errorf("CRD %s without --crds", o.GetName())
		}
		if ns := o.GetNamespace(); ns != "" && ns != "ferry-system" {
			t.Errorf("%s/%s in %s", o.GetKind(), o.GetName(), ns)
		}
		switch o.GetKind() {
		case "Deployment":
			img, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			want := deploy.ImageName + ":" + deploy.ImageTag(buildinfo.Get().Version)
			if got := img[0].(map[string]any)["image"]; got != want {
				t.Errorf("default image %v, want %s", got, want)
			}
			digest, _, _ = unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", installConfigDigest)
		case "PersistentVolumeClaim":
			if s, _, _ := unstructured.NestedString(o.Object, "spec", "resources", "requests", "storage"); s != "20Gi" {
				t.Errorf("default cache size %s", s)
			}
		}
	}
	installTestKey(t, dir, "cosign.pub") // a new key under the same name
	rotated, err := runInstall("--config", config, "--key", key)
	if err != nil {
		t.Fatal(err)
	}
	if digest == "" || !strings.Contains(out, digest) || strings.Contains(rotated, digest) {
		t.Fatalf("config digest %q does not follow the key", digest)
	}
}

// Every mistake is refused with an error that names the flag or field and says what is wanted.
func TestInstallRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	key := installTestKey(t, dir, "cosign.pub")
	good := "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: /etc/ferry/keys/cosign.pub}]\n"
	config := installTestFile(t, dir, "config.yaml", good)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	private := installTestFile(t, dir, "private.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	sameName := installTestKey(t, other, "cosign.pub")
	cfg := func(name, content string) string { return installTestFile(t, dir, name, content) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"--config", config}, "--key: give the public key"},
		{"missing key file", []string{"--config", config, "--key", filepath.Join(dir, "nope.pub")}, "no such file"},
		{"not a key", []string{"--config", config, "--key", config}, "--key: public key " + config},
		{"private key", []string{"--config", config, "--key", private}, "--key: public key " + private},
		{"two keys one name", []string{"--config", config, "--key", key, "--key", sameName}, `another key file is also named "cosign.pub"`},
		{"no config", []string{"--key", key}, "--config: give the agent's configuration"},
		{"missing config", []string{"--config", filepath.Join(dir, "nope.yaml"), "--key", key}, "no such file"},
		{"not YAML", []string{"--config", cfg("bad.yaml", "kind: [SyncConfig\n"), "--key", key}, "not YAML"},
		{"empty config", []string{"--config", cfg("empty.yaml", ""), "--key", key}, "empty; want a SyncConfig"},
		{"wrong kind", []string{"--config", cfg("kind.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: Mirror\n"), "--key", key}, `kind "Mirror", want SyncConfig`},
		{"wrong apiVersion", []string{"--config", cfg("api.yaml", "apiVersion: v1\nkind: SyncConfig\n"), "--key", key}, `apiVersion "v1", want ferry.dev/v1alpha1`},
		{"cache off the volume", []string{"--config", cfg("cache.yaml", good+"cache: /data/cache\n"), "--key", key}, `cache "/data/cache": the installed agent keeps its cache on the volume mounted at /var/lib/ferry`},
		{"no keys pinned", []string{"--config", cfg("nokeys.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\n"), "--key", key}, "keys: pin the public keys"},
		{"key not given", []string{"--config", cfg("keyname.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: /etc/ferry/keys/ops.pub}]\n"), "--key", key}, `keys[0].path "/etc/ferry/keys/ops.pub"`},
		{"key elsewhere", []string{"--config", cfg("keydir.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: /keys/cosign.pub}]\n"), "--key", key}, `keys[0].path "/keys/cosign.pub"`},
		{"registry port", []string{"--config", cfg("port.yaml", good+"serve: {listen: \":5001\"}\n"), "--key", key}, `serve.listen ":5001"`},
		{"health port", []string{"--config", cfg("health.yaml", good+"health: {listen: \"8080\"}\n"), "--key", key}, `health.listen "8080"`},
		{"lease elsewhere", []string{"--config", cfg("lease.yaml", good+"leaderElection: {namespace: kube-system}\n"), "--key", key}, `leaderElection.namespace "kube-system"`},
		{"image without tag", []string{"--config", config, "--key", key, "--image", "registry.example/ferry/sync"}, "give a tag or a digest"},
		{"image without registry", []string{"--config", config, "--key", key, "--image", "sync:v1"}, `--image "sync:v1"`},
		{"bad image", []string{"--config", config, "--key", key, "--image", "registry.example/Ferry/sync:v1"}, `--image "registry.example/Ferry/sync:v1"`},
		{"bad size", []string{"--config", config, "--key", key, "--cache-size", "lots"}, `--cache-size "lots"`},
		{"zero size", []string{"--config", config, "--key", key, "--cache-size", "0"}, `--cache-size "0"`},
		{"bad namespace", []string{"--config", config, "--key", key, "--namespace", "Ferry_System"}, `--namespace "Ferry_System"`},
		{"node port below the range", []string{"--config", config, "--key", key, "--registry-node-port", "29999"}, "--registry-node-port 29999: a nodePort is in 30000-32767"},
		{"node port above the range", []string{"--config", config, "--key", key, "--registry-node-port", "32768"}, "--registry-node-port 32768: a nodePort is in 30000-32767"},
		{"negative node port", []string{"--config", config, "--key", key, "--registry-node-port", "-1"}, "--registry-node-port -1: a nodePort is in 30000-32767"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runInstall(tc.args...)
			if err == nil {
				t.Fatalf("accepted; printed %d bytes", len(out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if out != "" {
				t.Fatalf("printed manifests with an error:\n%s", out)
			}
			t.Logf("%s", err)
		})
	}
}

// --registry-node-port makes the ferry Service a NodePort Service whose registry port has that
// nodePort (the ends of the range included); without it the Service stays ClusterIP and names
// no nodePort. Nothing else of the Service changes.
func TestInstallRegistryNodePort(t *testing.T) {
	dir := t.TempDir()
	config := installTestFile(t, dir, "config.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\nkeys: [{path: /etc/ferry/keys/cosign.pub}]\n")
	key := installTestKey(t, dir, "cosign.pub")
	for _, tc := range []struct {
		name     string
		args     []string
		wantType corev1.ServiceType
		wantPort int32 // the registry port's nodePort; 0 for none
	}{
		{"default", nil, corev1.ServiceTypeClusterIP, 0},
		{"zero", []string{"--registry-node-port", "0"}, corev1.ServiceTypeClusterIP, 0},
		{"in range", []string{"--registry-node-port", "30500"}, corev1.ServiceTypeNodePort, 30500},
		{"lowest", []string{"--registry-node-port", "30000"}, corev1.ServiceTypeNodePort, 30000},
		{"highest", []string{"--registry-node-port", "32767"}, corev1.ServiceTypeNodePort, 32767},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runInstall(append([]string{"--config", config, "--key", key}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var svc *corev1.Service
			for _, o := range installParseDocs(t, out) {
				if o.GetKind() != "Service" {
					continue
				}
				if svc != nil {
					t.Fatalf("two Services rendered: %s and %s", svc.Name, o.GetName())
				}
				svc = &corev1.Service{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, svc); err != nil {
					t.Fatal(err)
				}
			}
			if svc == nil || svc.Name != "ferry" {
				t.Fatalf("no Service ferry rendered:\n%s", out)
			}
			if svc.Spec.Type != tc.wantType {
				t.Errorf("Service ferry is type %q, want %q", svc.Spec.Type, tc.wantType)
			}
			want := []corev1.ServicePort{
				{Name: "registry", Port: 5000, TargetPort: intstr.FromString("registry"), Protocol: corev1.ProtocolTCP, NodePort: tc.wantPort},
				{Name: "http-metrics", Port: 8080, TargetPort: intstr.FromString("http-metrics"), Protocol: corev1.ProtocolTCP},
			}
			if !reflect.DeepEqual(svc.Spec.Ports, want) {
				t.Errorf("Service ferry ports\n%+v\nwant\n%+v", svc.Spec.Ports, want)
			}
		})
	}
}

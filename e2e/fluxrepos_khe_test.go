package e2e

import (
	"testing"
	"time"
)

// kustomizeHelmExample serves fluxcd/flux2-kustomize-helm-example and its stand-ins, and
// returns the repository's commit.
func kustomizeHelmExample(t *testing.T, w *fluxWorld, url string) string {
	files := snapshotFiles(t, "flux2-kustomize-helm-example")
	for _, c := range []string{"staging", "production"} {
		files["clusters/"+c+"/flux-system/gotk-components.yaml"] = gotkComponents()
		files["clusters/"+c+"/flux-system/gotk-sync.yaml"] = gotkSync(url, "clusters/"+c)
	}
	commit := w.repo(url, files)
	podinfoChart(t, w.helmRepo("https://stefanprodan.github.io/podinfo"))
	w.ociChart("quay.io/jetstack/charts", standIn("cert-manager", "1.16.0", "quay.io/jetstack/cert-manager-controller:v1.16.0",
		"cert-manager.io/ClusterIssuer/Cluster"))
	w.ociChart("docker.io/envoyproxy", standIn("gateway-helm", "1.8.0", "docker.io/envoyproxy/gateway:v1.8.0",
		"gateway.networking.k8s.io/GatewayClass/Cluster", "gateway.networking.k8s.io/Gateway/Namespaced", "gateway.networking.k8s.io/HTTPRoute/Namespaced"))
	return commit
}

// TestFluxRepoKustomizeHelmExample carries fluxcd/flux2-kustomize-helm-example: discovery
// goes through the ArtifactGenerator's ExternalArtifacts to the infrastructure controllers
// (cert-manager and Envoy Gateway, charts of OCIRepositories, stand-ins here) and the apps
// (podinfo's HelmRelease, with the redis image its values name), and mirror pack --explain
// lists each chart and image with the object that needs it. Both clusters are then packed and
// reconciled: every Kustomization, source and infrastructure HelmRelease becomes Ready at the
// repository's revision; podinfo's release installs, and needs running Pods to be Ready.
func TestFluxRepoKustomizeHelmExample(t *testing.T) {
	w := newFluxWorld(t)
	const url = "https://github.com/fluxcd/flux2-kustomize-helm-example"
	commit := kustomizeHelmExample(t, w, url)
	for _, cl := range []string{"staging", "production"} {
		t.Run(cl, func(t *testing.T) {
			w.t = t
			spec := w.spec(url, "clusters/"+cl)
			res := w.explain(spec)
			expectArtifact(t, res, "git", url+"@branch:main", "Kustomization flux-system/apps")
			expectArtifact(t, res, "chart", "https://stefanprodan.github.io/podinfo/podinfo@", "HelmRelease podinfo/podinfo")
			podinfo := expectArtifact(t, res, "image", "ghcr.io/stefanprodan/podinfo:", "HelmRelease podinfo/podinfo, chart podinfo")
			expectArtifact(t, res, "image", "public.ecr.aws/docker/library/redis:8.6.2", "HelmRelease podinfo/podinfo, chart podinfo")
			expectArtifact(t, res, "chart", "oci://quay.io/jetstack/charts/cert-manager@1.x", "HelmRelease cert-manager/cert-manager")
			expectArtifact(t, res, "image", "quay.io/jetstack/cert-manager-controller:v1.16.0", "HelmRelease cert-manager/cert-manager, chart cert-manager 1.16.0")
			expectArtifact(t, res, "chart", "oci://docker.io/envoyproxy/gateway-helm@>= 1.8.0-rc.0", "HelmRelease envoy-gateway-system/envoy-gateway")
			expectArtifact(t, res, "image", "docker.io/envoyproxy/gateway:v1.8.0", "HelmRelease envoy-gateway-system/envoy-gateway, chart gateway-helm 1.8.0")
			w.pushImages(res)
			_, kube := w.packAndReconcile(spec)
			w.waitReady(kube, "flux-system", "kustomization/flux-system", "kustomization/infra-controllers", "kustomization/infra-configs",
				"gitrepository/flux-system", "artifactgenerator/flux-system", "externalartifact/infrastructure", "externalartifact/apps")
			w.waitReady(kube, "cert-manager", "helmrelease/cert-manager", "ocirepository/cert-manager")
			w.waitReady(kube, "envoy-gateway-system", "helmrelease/envoy-gateway", "ocirepository/gateway-helm")
			w.waitReady(kube, "podinfo", "helmrepository/podinfo")
			out := fluxGetAll(t, w.dir, kube)
			t.Logf("flux get all -A (%s):\n%s", cl, out)
			rev := "main@sha1:" + commit[:8]
			for _, k := range []string{"flux-system", "infra-controllers", "infra-configs"} {
				expectFluxRow(t, out, "kustomization/"+k, rev, "True")
			}
			expectFluxRow(t, out, "helmrelease/cert-manager", "1.16.0", "True")
			expectFluxRow(t, out, "helmrelease/envoy-gateway", "1.8.0", "True")
			// The patch in clusters/<cluster>/infrastructure.yaml reached the ClusterIssuer.
			server := jsonpath(t, w.dir, kube, "clusterissuer", "letsencrypt", "-o", "jsonpath={.spec.acme.server}")
			want := map[string]string{"staging": "https://acme-staging-v02.api.letsencrypt.org/directory", "production": "https://acme-v02.api.letsencrypt.org/directory"}[cl]
			if server != want {
				t.Fatalf("ClusterIssuer letsencrypt server %q, want %q", server, want)
			}
			// podinfo's release is installed (its Deployment runs the carried image); without a
			// kubelet its Pods never run, so it and the apps Kustomization wait for them.
			w.waitPodinfo(kube, kube, podinfo.Source, 120*time.Second)
			// The release's values reach the chart: redis is on, at the image they name.
			if img := jsonpath(t, w.dir, kube, "deployment", "podinfo-redis", "-n", "podinfo", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "public.ecr.aws/docker/library/redis:8.6.2" {
				t.Fatalf("podinfo's redis runs %s, want public.ecr.aws/docker/library/redis:8.6.2 (the HelmRelease's values)", img)
			}
		})
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/serve/registry"
)

// The OCI distribution-spec conformance suite, in read-only mode, passes its pull and
// content-discovery workflows against `sync serve`, pointed at content already imported.
func TestServeConformance(t *testing.T) {
	u := newUpstream(t)
	dir := filepath.Join(u.dir, "bundle")
	must(t, u.dir, []string{"COSIGN_PASSWORD=ferry"}, "mirror", "pack", "-f", u.specPath, "--key", "mirror.key", "--plain-http", u.reg.Host, "--out", dir)
	res, err := bundle.ReadLayout(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	u.reg.Stop()
	cacheDir := filepath.Join(u.dir, "cache")
	must(t, u.dir, nil, "sync", "import", "--cache", cacheDir, "--key", "mirror.pub", dir)
	host := startServe(t, u.dir, cacheDir)

	app := res.Bundle.Item("app")
	repo, tag := registry.RepositoryName(*app)
	// The image's index, its manifests, and their configs and layers, as the suite's read-only data.
	manifests := []string{string(app.Descriptor.Digest)}
	var blobs []string
	raw, _ := os.ReadFile(filepath.Join(dir, "blobs", "sha256", app.Descriptor.Digest.Encoded()))
	var idx ocispec.Index
	json.Unmarshal(raw, &idx)
	for _, m := range idx.Manifests {
		manifests = append(manifests, string(m.Digest))
		b, _ := os.ReadFile(filepath.Join(dir, "blobs", "sha256", m.Digest.Encoded()))
		var man ocispec.Manifest
		json.Unmarshal(b, &man)
		blobs = append(blobs, string(man.Config.Digest))
		for _, l := range man.Layers {
			blobs = append(blobs, string(l.Digest))
		}
	}
	var tags []string
	tags = append(tags, tag)
	for _, r := range app.Referrers {
		if r.Tag != "" {
			tags = append(tags, r.Tag)
		}
	}
	env := []string{
		"OCI_REGISTRY=" + host, "OCI_TLS=disabled", "OCI_REPO1=" + repo, "OCI_REPO2=" + repo,
		"OCI_API_PUSH=false", "OCI_API_BLOBS_DELETE=false", "OCI_API_MANIFESTS_DELETE=false", "OCI_API_TAGS_DELETE=false",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=false", "OCI_API_BLOBS_UPLOAD_CANCEL=false", "OCI_API_BLOBS_ATOMIC=false",
		"OCI_API_MANIFESTS_ATOMIC=false", "OCI_API_TAGS_ATOMIC=false", "OCI_API_REFERRER=true",
		"OCI_DATA_SHA512=false", "OCI_DATA_NONDISTRIBUTABLE=false",
		"OCI_RO_DATA_TAGS=" + strings.Join(tags, " "),
		"OCI_RO_DATA_MANIFESTS=" + strings.Join(manifests, " "),
		"OCI_RO_DATA_BLOBS=" + strings.Join(blobs, " "),
		"OCI_RO_DATA_REFERRERS=" + string(app.Descriptor.Digest),
		"OCI_RESULTS_DIR=" + t.TempDir(),
	}
	r := run(t, u.dir, env, "conformance")
	out := r.Stdout + r.Stderr
	os.WriteFile(filepath.Join(u.dir, "conformance.log"), []byte(out), 0o644)
	count := func(status string) int {
		m := regexp.MustCompile(`(?m)^\s*` + status + `\.+:\s+(\d+)\s*$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s count in the suite's summary:\n%s", status, out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	pass, fail, errs, disabled := count("Pass"), count("FAIL"), count("Error"), count("Disabled")
	t.Logf("conformance suite against sync serve (read-only pull and content discovery): %d Pass, %d FAIL, %d Error, %d Disabled (push, delete and upload workflows: a read-only registry)", pass, fail, errs, disabled)
	if pass == 0 || fail > 0 || errs > 0 {
		failed := regexp.MustCompile(`(?m)^.*: FAIL$`).FindAllString(out, -1)
		t.Fatalf("failures:\n%s\n\nfull output:\n%s", strings.Join(failed, "\n"), out)
	}
	for _, workflow := range []string{"read-only/pull: Pass", "read-only/head: Pass", "read-only/tag-list: Pass", "read-only/referrers: Pass"} {
		if !strings.Contains(out, workflow) {
			t.Fatalf("workflow %q did not pass:\n%s", workflow, out)
		}
	}
}

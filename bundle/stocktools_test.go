package bundle_test

import (
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// run runs a stock CLI built by `make tools` and returns its standard output.
func run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	return testenv.Must(t, t.TempDir(), nil, tool, args...)
}

// Stock OCI tools read a bundle directory: they list its entries and copy images out of it
// into a registry, where the images have their upstream digests.
func TestStockToolsReadBundleDirectory(t *testing.T) {
	f := newFixture(t, 1)
	reg := testenv.NewRegistry(t)

	// oras lists the named entries and copies one item, by name, with its upstream digest.
	tags := strings.Fields(run(t, "oras", "repo", "tags", "--oci-layout", f.dir))
	for _, want := range []string{"bundle", "app", "multi", "podinfo", "platform"} {
		if !contains(tags, want) {
			t.Fatalf("oras repo tags lists %v, missing %s", tags, want)
		}
	}
	for _, item := range []string{"app", "multi"} {
		dst := reg.Host + "/oras/" + item + ":1"
		run(t, "oras", "cp", "--from-oci-layout", f.dir+":"+item, "--to-plain-http", dst)
		got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", dst))
		if got != string(f.images[item]) {
			t.Fatalf("oras copied %s as %s, upstream digest %s", item, got, f.images[item])
		}
		t.Logf("oras cp %s:%s -> %s: digest %s (upstream)", "bundle", item, dst, got)
	}

	// crane lists the layout's entries and pushes the whole bundle; each image is then in the
	// registry under its upstream digest, complete.
	list := run(t, "crane", "index", "list", f.dir)
	for _, d := range []string{string(f.root.Digest), string(f.images["app"]), string(f.images["multi"])} {
		if !strings.Contains(list, d) {
			t.Fatalf("crane index list does not show %s:\n%s", d, list)
		}
	}
	dst := reg.Host + "/crane/bundle:1"
	run(t, "crane", "push", "--insecure", "--index", f.dir, dst)
	for _, item := range []string{"app", "multi"} {
		ref := reg.Host + "/crane/bundle@" + string(f.images[item])
		if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", ref)); got != string(f.images[item]) {
			t.Fatalf("crane pushed %s as %s, upstream digest %s", item, got, f.images[item])
		}
		run(t, "crane", "validate", "--insecure", "--remote", ref)
		t.Logf("crane push --index bundle -> %s: digest %s (upstream), crane validate passes", ref, f.images[item])
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

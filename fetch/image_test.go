package fetch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/spec"
)

// tool runs a CLI built by `make tools` in dir and returns its output.
func tool(t *testing.T, dir, name string, env []string, args ...string) string {
	t.Helper()
	return testenv.Must(t, dir, env, name, args...)
}

// cosignKeys makes a cosign key pair with the real CLI and returns its folder.
func cosignKeys(t *testing.T) string {
	dir := t.TempDir()
	tool(t, dir, "cosign", []string{"COSIGN_PASSWORD=ferry"}, "generate-key-pair")
	return dir
}

// sign signs ref offline with the real cosign CLI: in the Sigstore bundle form (an OCI
// referrer) by default, in the older tag-based form when legacy is set.
func sign(t *testing.T, keys, ref string, legacy bool) {
	args := []string{"sign", "--yes", "--key", "cosign.key", "--use-signing-config=false", "--tlog-upload=false", "--allow-insecure-registry"}
	if legacy {
		args = append(args, "--new-bundle-format=false")
	}
	tool(t, keys, "cosign", []string{"COSIGN_PASSWORD=ferry"}, append(args, ref)...)
}

func TestImageResolvesCopiesAndCarriesSignatures(t *testing.T) {
	ctx := context.Background()
	reg := testenv.NewRegistry(t)
	keys := cosignKeys(t)
	repo := reg.Host + "/team/app"
	digests := map[string]string{}
	for _, tag := range []string{"1.0.0", "1.2.0", "2.0.0", "latest"} {
		d, err := testenv.PushIndex(ctx, repo+":"+tag, "linux/amd64", "linux/arm64")
		if err != nil {
			t.Fatal(err)
		}
		digests[tag] = d
	}
	signed := repo + "@" + digests["1.2.0"]
	sign(t, keys, signed, false)
	sign(t, keys, signed, true)
	// An attestation in the tag-based form (sha256-<hex>.att).
	if err := os.WriteFile(filepath.Join(keys, "predicate.json"), []byte(`{"built-by":"ferry tests"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, keys, "cosign", []string{"COSIGN_PASSWORD=ferry"}, "attest", "--yes", "--key", "cosign.key", "--type", "custom",
		"--predicate", "predicate.json", "--use-signing-config=false", "--tlog-upload=false", "--allow-insecure-registry",
		"--new-bundle-format=false", signed)
	opts := &fetch.Options{PlainHTTP: []string{reg.Host}}

	cases := []struct {
		name      string
		src       spec.Image
		want      string
		referrers int
	}{
		{"semver range picks the highest match", spec.Image{Name: "app", Image: repo, SemVer: ">=1.0.0 <2.0.0"}, digests["1.2.0"], 3},
		{"tag", spec.Image{Name: "app", Image: repo, Tag: "2.0.0"}, digests["2.0.0"], 0},
		{"digest", spec.Image{Name: "app", Image: repo, Digest: digests["1.0.0"]}, digests["1.0.0"], 0},
		{"one platform of the index", spec.Image{Name: "app", Image: repo, Tag: "1.2.0", Platforms: []string{"linux/arm64"}}, digests["1.2.0"], 3},
		{"signatures off", spec.Image{Name: "app", Image: repo, Tag: "1.2.0", Signatures: new(bool)}, digests["1.2.0"], 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := bundle.NewLayout(dir)
			if err != nil {
				t.Fatal(err)
			}
			item, err := fetch.Image(ctx, l, c.src, opts)
			if err != nil {
				t.Fatal(err)
			}
			if string(item.Descriptor.Digest) != c.want || item.Revision != c.want {
				t.Fatalf("carried %s, want upstream digest %s", item.Descriptor.Digest, c.want)
			}
			if len(item.Referrers) != c.referrers {
				t.Fatalf("carried %d referrers, want %d: %+v", len(item.Referrers), c.referrers, item.Referrers)
			}
			var legacy, attestation, referrer bool
			for _, r := range item.Referrers {
				legacy = legacy || strings.HasSuffix(r.Tag, ".sig")
				attestation = attestation || strings.HasSuffix(r.Tag, ".att")
				referrer = referrer || (r.Tag == "" && r.Descriptor.ArtifactType == "application/vnd.dev.sigstore.bundle.v0.3+json")
			}
			if c.referrers > 0 && !(legacy && attestation && referrer) {
				t.Fatalf("want the .sig and .att tag forms and the Sigstore bundle referrer, got %+v", item.Referrers)
			}
			now := time.Now()
			if _, err := bundle.Write(ctx, l, &bundle.Bundle{Sequence: 1, Created: now, Expires: now.Add(time.Hour), Items: []bundle.Item{item}}, nil); err != nil {
				t.Fatalf("carried image is not a complete bundle item: %v", err)
			}
			blobs, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
			t.Logf("%s: %s -> %s, %d referrers, %d blobs", c.name, item.Source, item.Descriptor.Digest, len(item.Referrers), len(blobs))
		})
	}

	for _, c := range []struct {
		name string
		src  spec.Image
		want string
	}{
		{"nothing in range", spec.Image{Name: "app", Image: repo, SemVer: ">=3.0.0"}, `image app (` + repo + `): no tag matches semver ">=3.0.0" (3 semver tags seen)`},
		{"missing tag", spec.Image{Name: "app", Image: repo, Tag: "9.9.9"}, "image app (" + repo + "): resolve 9.9.9"},
		{"no such platform", spec.Image{Name: "app", Image: repo, Tag: "1.0.0", Platforms: []string{"linux/s390x"}}, "no child of " + repo + ":1.0.0 is for platforms linux/s390x"},
		{"unreachable registry", spec.Image{Name: "app", Image: "127.0.0.1:1/team/app", Tag: "1"}, "image app (127.0.0.1:1/team/app): resolve 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := bundle.NewLayout(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			o := &fetch.Options{PlainHTTP: []string{reg.Host, "127.0.0.1:1"}}
			_, err = fetch.Image(ctx, l, c.src, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

package medium_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// newRepo returns a client of path in reg, with an empty Docker config.
func newRepo(t *testing.T, reg *testenv.Registry, path string) *remote.Repository {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	repo, err := medium.NewRepository(reg.Host+"/"+path, true)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// regLoc is the location of tag in repo.
func regLoc(repo *remote.Repository, tag string) medium.Location {
	return medium.Registry(repo.Reference.Registry+"/"+repo.Reference.Repository, tag)
}

// plainHTTP reaches repo's registry over plain HTTP, as the test registries serve.
func plainHTTP(repo *remote.Repository) medium.Option {
	return medium.WithPlainHTTP(repo.Reference.Registry)
}

// pushTo writes the bundle in dir to tag in repo and returns its root.
func pushTo(ctx context.Context, repo *remote.Repository, dir, tag string, opts ...bundle.ReadOption) (ocispec.Descriptor, error) {
	w, err := medium.Write(ctx, regLoc(repo, tag), dir, plainHTTP(repo), medium.WithReadOptions(opts...))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return w.Root, nil
}

// A bundle pushed to a registry and pulled into a new directory has the same root, the same
// blob files and the same index.json.
func TestRegistryRoundTrip(t *testing.T) {
	reg := testenv.NewRegistry(t)
	repo := newRepo(t, reg, "ferry/bundles")
	ctx := context.Background()
	tb := newTestBundle(t, 1)
	for i := range 2 { // pushing again is a no-op that succeeds
		root, err := pushTo(ctx, repo, tb.dir, "edge-1", bundle.WithLimits(bundle.Limits{}))
		if err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
		if root.Digest != tb.root.Digest {
			t.Fatalf("pushed root %s, bundle root %s", root.Digest, tb.root.Digest)
		}
	}
	dir := filepath.Join(t.TempDir(), "pulled")
	res, err := medium.Pull(ctx, regLoc(repo, "edge-1"), dir, plainHTTP(repo))
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.Digest != tb.root.Digest || len(res.Attachments) != 2 {
		t.Fatalf("pulled root %s with %d attachments, pushed %s with 2", res.Root.Digest, len(res.Attachments), tb.root.Digest)
	}
	want, got := blobFiles(t, tb.dir), blobFiles(t, dir)
	if len(got) != len(want) {
		t.Fatalf("pulled %d blob files, pushed %d", len(got), len(want))
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Fatalf("blob %s differs after the round trip", name)
		}
	}
	for _, name := range []string{bundle.IndexFile, bundle.LayoutFile} {
		a, errA := os.ReadFile(filepath.Join(tb.dir, name))
		b, errB := os.ReadFile(filepath.Join(dir, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after the round trip (%v, %v):\n%s\n---\n%s", name, errA, errB, a, b)
		}
	}
	t.Logf("%s/ferry/bundles:edge-1: pushed and pulled root %s, %d blobs, %d attachments; index.json identical", reg.Host, res.Root.Digest, len(got), len(res.Attachments))
}

// Stock tools see what a signer and a consumer need: the tag resolves to the root, each item
// is fetchable by digest, the signature tag is listed and the root's referrer is discoverable.
func TestRegistryStockTools(t *testing.T) {
	reg := testenv.NewRegistry(t)
	repo := newRepo(t, reg, "ferry/bundles")
	tb := newTestBundle(t, 2)
	if _, err := pushTo(context.Background(), repo, tb.dir, "edge-1"); err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/ferry/bundles"
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", ref+":edge-1")); got != string(tb.root.Digest) {
		t.Fatalf("crane digest %s:edge-1 = %s, root %s", ref, got, tb.root.Digest)
	}
	for name, item := range tb.items {
		want, err := os.ReadFile(blobPath(tb.dir, item.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, "oras", "manifest", "fetch", "--plain-http", ref+"@"+string(item.Digest)); got != string(want) {
			t.Fatalf("oras manifest fetch of item %s:\n%s\nwant\n%s", name, got, want)
		}
	}
	// A registry without the referrers API also gets oras-go's referrers tag, sha256-<root hex>.
	tags := strings.Fields(run(t, "crane", "ls", "--insecure", ref))
	sig, referrersTag := "sha256-"+tb.root.Digest.Encoded()+".sig", "sha256-"+tb.root.Digest.Encoded()
	if !contains(tags, "edge-1") || !contains(tags, sig) {
		t.Fatalf("crane ls = %q, want edge-1 and %s", tags, sig)
	}
	for _, tag := range tags {
		if tag != "edge-1" && tag != sig && tag != referrersTag {
			t.Fatalf("crane ls = %q: unexpected tag %s", tags, tag)
		}
	}
	if got := strings.TrimSpace(run(t, "crane", "digest", "--insecure", ref+":"+sig)); got != string(tb.tagged.Digest) {
		t.Fatalf("%s resolves to %s, want the tagged signature %s", sig, got, tb.tagged.Digest)
	}
	if out := run(t, "oras", "discover", "--plain-http", "--format", "json", ref+"@"+string(tb.root.Digest)); !strings.Contains(out, string(tb.referrer.Digest)) {
		t.Fatalf("oras discover does not list the root's referrer %s:\n%s", tb.referrer.Digest, out)
	}
	t.Logf("crane and oras read %s: root %s, %d items, tags %q, referrer %s", ref, tb.root.Digest, len(tb.items), tags, tb.referrer.Digest)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A bundle that is not complete is refused before anything is pushed.
func TestPushRegistryRefusesIncompleteBundle(t *testing.T) {
	reg := testenv.NewRegistry(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, tb *testBundle)
		check  bundle.Check
	}{
		{"blob deleted", func(t *testing.T, tb *testBundle) {
			if err := os.Remove(blobPath(tb.dir, tb.layer.Digest)); err != nil {
				t.Fatal(err)
			}
		}, bundle.CheckMissing},
		{"blob altered", func(t *testing.T, tb *testBundle) {
			p := blobPath(tb.dir, tb.layer.Digest)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[0] ^= 0x01
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, bundle.CheckDigest},
		{"index.json deleted", func(t *testing.T, tb *testBundle) {
			if err := os.Remove(filepath.Join(tb.dir, bundle.IndexFile)); err != nil {
				t.Fatal(err)
			}
		}, bundle.CheckMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBundle(t, 3)
			tc.damage(t, tb)
			repo := newRepo(t, reg, "ferry/"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := pushTo(ctx, repo, tb.dir, "edge-1")
			if err == nil {
				t.Fatal("Write pushed an incomplete bundle")
			}
			if e, ok := bundle.AsError(err); !ok || e.Check != tc.check {
				t.Fatalf("want a bundle.Error with check %q, got %v", tc.check, err)
			}
			if prefix := "registry " + repo.Reference.Registry + "/" + repo.Reference.Repository + ":edge-1: "; !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("error does not start with %q: %v", prefix, err)
			}
			if _, err := repo.Resolve(ctx, "edge-1"); !errors.Is(err, errdef.ErrNotFound) {
				t.Fatalf("tag edge-1 after a refused push: %v, want not found", err)
			}
			for _, d := range []ocispec.Descriptor{tb.root, tb.items["platform"], tb.items["podinfo"], tb.referrer} {
				if ok, err := repo.Exists(ctx, d); err != nil || ok {
					t.Fatalf("%s exists after a refused push (%v)", d.Digest, err)
				}
			}
			t.Logf("refused: %v", err)
		})
	}
}

// Pull pulls only a Ferry bundle's root, and only into a new directory.
func TestPullRegistryRefuses(t *testing.T) {
	reg := testenv.NewRegistry(t)
	repo := newRepo(t, reg, "ferry/bundles")
	ctx := context.Background()
	tb := newTestBundle(t, 4)
	if _, err := pushTo(ctx, repo, tb.dir, "edge-1"); err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, tb.items["podinfo"], "chart"); err != nil {
		t.Fatal(err)
	}
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tag, dir, want string
	}{
		{"directory not empty", "edge-1", used, "not empty"},
		{"tag missing", "edge-9", "", "resolve"},
		{"tag not a bundle root", "chart", "", "a Ferry bundle's root is an OCI image index"},
		{"tag invalid", "-bad", "", "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = filepath.Join(t.TempDir(), "pulled")
			}
			_, err := medium.Pull(ctx, regLoc(repo, tc.tag), dir, plainHTTP(repo))
			prefix := "registry " + reg.Host + "/ferry/bundles:" + tc.tag + ": "
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Pull(%s) = %v, want an error starting %q and saying %q", tc.tag, err, prefix, tc.want)
			}
			if _, statErr := os.Stat(filepath.Join(dir, bundle.IndexFile)); !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("%s has an index.json after a failed pull (%v)", dir, statErr)
			}
		})
	}
}

// NewRepository takes a repository without a tag, and credentials from Docker's config.
func TestNewRepository(t *testing.T) {
	dockerConfig := t.TempDir()
	basic := base64.StdEncoding.EncodeToString([]byte("ferry:s3cret"))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(`{"auths":{"registry.example:5000":{"auth":"`+basic+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	for _, tc := range []struct {
		ref       string
		plainHTTP bool
		wantErr   string
		wantUser  string
	}{
		{"registry.example:5000/ferry/bundles", true, "", "ferry"},
		{"other.example/ferry/bundles", false, "", ""},
		{"registry.example:5000/ferry/bundles:edge-1", false, "without a tag or digest", ""},
		{"not a reference", false, "registry not a reference", ""},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			repo, err := medium.NewRepository(tc.ref, tc.plainHTTP)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewRepository(%q) = %v, want an error saying %q", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if repo.PlainHTTP != tc.plainHTTP {
				t.Fatalf("PlainHTTP %v, want %v", repo.PlainHTTP, tc.plainHTTP)
			}
			client, ok := repo.Client.(*auth.Client)
			if !ok {
				t.Fatalf("client %T, want *auth.Client", repo.Client)
			}
			cred, err := client.Credential(context.Background(), repo.Reference.Registry)
			if err != nil {
				t.Fatal(err)
			}
			if cred.Username != tc.wantUser || (tc.wantUser != "" && cred.Password != "s3cret") {
				t.Fatalf("credential for %s: user %q, want %q", repo.Reference.Registry, cred.Username, tc.wantUser)
			}
		})
	}
}

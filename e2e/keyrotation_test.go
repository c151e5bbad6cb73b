package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

// writeKeyPair writes an encrypted cosign key pair (as 'cosign generate-key-pair' does) to
// prefix.key and prefix.pub in dir, with the password "ferry".
func writeKeyPair(t *testing.T, dir, prefix string) {
	t.Helper()
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("ferry"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, prefix+".key"), keys.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, prefix+".pub"), keys.PublicBytes, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotationOverThreeBundles rotates the signing key from A to B with the real binaries:
// bundle 1 (signed by A) carries A's statement introducing B; bundle 2 is signed by B alone and
// accepted though only A is pinned; bundle 3 (signed by B) carries B's revocation of A. Then a
// bundle signed by A alone is refused on its signature and changes nothing, and 'sync status'
// lists B as trusted (introduced by bundle 1) and A as revoked (by bundle 3). A statement
// signed by a key the cache does not trust is refused on the key-statement check.
func TestKeyRotationOverThreeBundles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gitSrv := testenv.NewGitServer(t)
	if _, err := gitSrv.CreateRepo(ctx, "platform", map[string]string{"apps/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\nbundle:\n  expires: 720h\ngit:\n  - name: platform\n    url: %s\n    ref: {branch: main}\n", gitSrv.RepoURL("platform"))
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	writeKeyPair(t, dir, "a")
	writeKeyPair(t, dir, "b")
	writeKeyPair(t, dir, "mallory")
	cfg := "apiVersion: ferry.dev/v1alpha1\nkind: SyncConfig\ncache: cache\nkeys:\n  - path: a.pub\nsources:\n  - dir: drop\n"
	if err := os.WriteFile(filepath.Join(dir, "sync.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := []string{"COSIGN_PASSWORD=ferry"}
	pack := func(seq int, previous, out string, args ...string) string {
		t.Helper()
		a := append([]string{"pack", "-f", "ferry.yaml", "--sequence", fmt.Sprint(seq), "--out", out}, args...)
		if previous != "" {
			a = append(a, "--previous", previous)
		}
		var s struct {
			Root struct {
				Digest string `json:"digest"`
			} `json:"root"`
		}
		outJSON := must(t, dir, pw, "mirror", append(a, "--output", "json")...)
		if err := json.Unmarshal([]byte(outJSON), &s); err != nil || s.Root.Digest == "" {
			t.Fatalf("pack output: %v\n%s", err, outJSON)
		}
		return s.Root.Digest
	}
	// Only A is pinned, as an agent installed before the rotation has it.
	imp := func(bundle string) result {
		return run(t, dir, nil, "sync", "import", bundle, "--key", "a.pub", "--cache", "cache")
	}
	state := func() uint64 {
		var st struct {
			State struct{ Sequence uint64 } `json:"state"`
		}
		out := must(t, dir, nil, "sync", "status", "--cache", "cache", "-o", "json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return st.State.Sequence
	}

	// A statement introducing B that Mallory signed: the bundle carrying it is refused.
	must(t, dir, pw, "mirror", "key-statement", "--key", "mallory.key", "--name", "ops-b", "--public-key", "b.pub", "--out", "forged.json")
	pack(1, "", "forged", "--key", "a.key", "--key-statement", "forged.json")
	if r := imp("forged"); r.Err == nil || !strings.Contains(r.Stderr, "key-statement") || !strings.Contains(r.Stderr, "ops-b") {
		t.Fatalf("bundle with a forged statement: err %v\n%s", r.Err, r.Stderr)
	}

	// Bundle 1: signed by A, carrying A's introduction of B.
	must(t, dir, pw, "mirror", "key-statement", "--key", "a.key", "--name", "ops-b", "--public-key", "b.pub", "--out", "introduce-b.json")
	root1 := pack(1, "", "b1", "--key", "a.key", "--key-statement", "introduce-b.json")
	if out := must(t, dir, nil, "sync", "import", "b1", "--key", "a.pub", "--cache", "cache"); !strings.Contains(out, `key "ops-b"`) || !strings.Contains(out, "introduced") {
		t.Fatalf("import of bundle 1 did not report B introduced:\n%s", out)
	}
	// Bundle 2: signed by B alone.
	root2 := pack(2, root1, "b2", "--key", "b.key")
	if r := imp("b2"); r.Err != nil {
		t.Fatalf("bundle 2 signed by the introduced key B: %v\n%s", r.Err, r.Stderr)
	}
	// Bundle 3: signed by B, carrying B's revocation of A.
	must(t, dir, pw, "mirror", "key-statement", "--key", "b.key", "--name", "ops-a", "--public-key", "a.pub", "--revoke", "--out", "revoke-a.json")
	root3 := pack(3, root2, "b3", "--key", "b.key", "--key-statement", "revoke-a.json")
	if r := imp("b3"); r.Err != nil || !strings.Contains(r.Stdout, "revoked") {
		t.Fatalf("bundle 3 revoking A: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if got := state(); got != 3 {
		t.Fatalf("current bundle %d after the rotation, want 3", got)
	}

	// Bundle 4 signed by A alone: refused on the signature check, and nothing changes.
	pack(4, root3, "b4", "--key", "a.key")
	before := treeHash(t, filepath.Join(dir, "cache"))
	r := imp("b4")
	if r.Err == nil || !strings.Contains(r.Stderr, "check: signature") {
		t.Fatalf("bundle signed by the revoked key A: err %v\n%s", r.Err, r.Stderr)
	}
	if after := treeHash(t, filepath.Join(dir, "cache")); after != before {
		t.Fatal("the refused bundle changed the cache")
	}
	if got := state(); got != 3 {
		t.Fatalf("current bundle %d, want 3", got)
	}

	// sync status shows the keys with their origins: A pinned but revoked by bundle 3, B
	// introduced by bundle 1.
	var st struct {
		Keys []struct {
			Name, Fingerprint, Origin, Revoked string
		} `json:"keys"`
	}
	out := must(t, dir, nil, "sync", "status", "--config", "sync.yaml", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range st.Keys {
		got[k.Name] = k.Origin + "|" + k.Revoked
	}
	if got["a.pub"] != "config|bundle 3" || got["ops-b"] != "bundle 1|" || len(st.Keys) != 2 {
		t.Fatalf("sync status keys %+v, want a.pub (config, revoked by bundle 3) and ops-b (bundle 1)\n%s", got, out)
	}
	text := must(t, dir, nil, "sync", "status", "--config", "sync.yaml")
	if !strings.Contains(text, "ops-b") || !strings.Contains(text, "REVOKED") {
		t.Fatalf("sync status text lists no keys:\n%s", text)
	}
}

// treeHash hashes every file and folder under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var parts []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			parts = append(parts, rel+"/")
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		parts = append(parts, rel+"="+digest.FromBytes(b).String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

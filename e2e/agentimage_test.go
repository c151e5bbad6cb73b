package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/serve/registry"
)

// The agent's own image travels like any workload's: built without a container engine by
// hack/image from a static sync binary (the same digest when rebuilt), pushed to a registry,
// packed by `mirror pack` into a signed bundle, imported with the registry gone, and pulled
// back from `sync serve` by stock crane at the digest it was built with; the binary in its
// layer is the one built, and runs.
func TestAgentImageThroughABundle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const version = "v9.8.7-e2e"

	static := filepath.Join(dir, "linux_"+runtime.GOARCH, "sync")
	agentImageGoBuild(t, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH},
		"-trimpath", "-ldflags", "-s -w -X github.com/ferry-gitops/ferry/internal/buildinfo.Version="+version, "-o", static, "../cmd/sync")
	imageTool := filepath.Join(dir, "image")
	agentImageGoBuild(t, nil, "-o", imageTool, "../hack/image")

	reg := testenv.NewRegistry(t)
	upstream := reg.Host + "/ferry/sync"
	built := strings.TrimSpace(must(t, dir, []string{"SOURCE_DATE_EPOCH=1767225600"}, imageTool, "--binary", static, "--version", version,
		"--revision", "e2e", "--layout", filepath.Join(dir, "layout"), "--push", upstream+":"+version, "--plain-http"))
	rebuilt := strings.TrimSpace(must(t, dir, []string{"SOURCE_DATE_EPOCH=1767225600"}, imageTool, "--binary", static, "--version", version,
		"--revision", "e2e", "--layout", filepath.Join(dir, "layout-again")))
	if !strings.HasPrefix(built, "sha256:") || rebuilt != built {
		t.Fatalf("built %q, rebuilt %q: want one digest", built, rebuilt)
	}
	t.Logf("hack/image built %s for linux/%s twice, pushed to %s:%s", built, runtime.GOARCH, upstream, version)

	pw := []string{"COSIGN_PASSWORD=ferry"}
	must(t, dir, pw, "cosign", "generate-key-pair")
	spec := fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: Mirror
images:
  - name: ferry-sync
    image: %s
    tag: %s
    signatures: false
`, upstream, version)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	bundleDir := filepath.Join(dir, "bundle")
	must(t, dir, pw, "mirror", "pack", "-f", "ferry.yaml", "--key", "cosign.key", "--plain-http", reg.Host, "--out", bundleDir)
	res, err := bundle.ReadLayout(ctx, bundleDir)
	if err != nil {
		t.Fatal(err)
	}
	item := res.Bundle.Item("ferry-sync")
	if item == nil || string(item.Descriptor.Digest) != built {
		t.Fatalf("bundle carries %+v, built %s", item, built)
	}
	if err := reg.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := run(t, dir, nil, "crane", "digest", "--insecure", upstream+":"+version); r.Err == nil {
		t.Fatal("the upstream registry still answers")
	}

	cacheDir := filepath.Join(dir, "cache")
	must(t, dir, nil, "sync", "import", "--cache", cacheDir, "--key", "cosign.pub", bundleDir)
	// sync recognised hack/image's labels: the cache recorded the agent's version (agent-rollback).
	var st struct {
		AgentVersion string `json:"agentVersion"`
	}
	if raw, err := os.ReadFile(filepath.Join(cacheDir, "state.json")); err != nil || json.Unmarshal(raw, &st) != nil || st.AgentVersion != version {
		t.Fatalf("state.json after the import: %s (%v), want agentVersion %s", raw, err, version)
	}
	host := startServe(t, dir, cacheDir)
	repo, tag := registry.RepositoryName(*item)
	ref := host + "/" + repo
	if got := strings.TrimSpace(must(t, dir, nil, "crane", "digest", "--insecure", ref+":"+tag)); got != built {
		t.Fatalf("sync serves %s:%s at %s, built %s", ref, tag, got, built)
	}
	pinned := ref + "@" + built
	must(t, dir, nil, "crane", "validate", "--insecure", "--remote", pinned)
	var cfg struct {
		Architecture string `json:"architecture"`
		Config       struct {
			Entrypoint []string          `json:"Entrypoint"`
			User       string            `json:"User"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(must(t, dir, nil, "crane", "config", "--insecure", pinned)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != runtime.GOARCH || cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/usr/local/bin/sync" ||
		cfg.Config.Labels["org.opencontainers.image.version"] != version || cfg.Config.Labels["org.opencontainers.image.revision"] != "e2e" ||
		cfg.Config.Labels["org.opencontainers.image.source"] == "" {
		t.Fatalf("config served: %+v", cfg)
	}

	// The binary in the layer is the one built, and runs.
	fsTar := filepath.Join(dir, "fs.tar")
	must(t, dir, nil, "crane", "export", "--insecure", pinned, fsTar)
	extracted := filepath.Join(dir, "extracted", "sync")
	if err := agentImageExtract(fsTar, "usr/local/bin/sync", extracted); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(static)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(extracted)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the layer's binary (%d bytes) is not the one built (%d bytes)", len(got), len(want))
	}
	out := must(t, dir, nil, extracted, "version")
	if !strings.HasPrefix(out, version+" ") {
		t.Fatalf("the image's sync version printed %q, want %s", out, version)
	}
	t.Logf("crane pulled %s from sync serve with the registry gone; its /usr/local/bin/sync prints %q", pinned, strings.TrimSpace(out))
}

// agentImageGoBuild runs go build in the e2e folder (package paths are relative to it), env added.
func agentImageGoBuild(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// agentImageExtract copies the regular file name out of a tar file to dst, executable.
func agentImageExtract(tarPath, name, dst string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s holds no %s", tarPath, name)
		}
		if err != nil {
			return err
		}
		if strings.TrimPrefix(h.Name, "/") != name {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
			return fmt.Errorf("%s in %s: type %c, mode %o: not an executable file", name, tarPath, h.Typeflag, h.Mode)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
}

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferry-gitops/ferry/internal/testenv"
)

const hello = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from the image\") }\n"

// buildHello builds a small program for linux/arch, static unless cgo is asked for.
func buildHello(t *testing.T, arch string, cgo bool) string {
	t.Helper()
	dir := t.TempDir()
	src := hello
	env := []string{"GOOS=linux", "GOARCH=" + arch, "CGO_ENABLED=0"}
	if cgo {
		src = "package main\n\n// int answer(void) { return 42; }\nimport \"C\"\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(C.answer()) }\n"
		env[2] = "CGO_ENABLED=1"
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sync")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (%s, cgo %v): %v\n%s", arch, cgo, err, b)
	}
	return out
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// The image of one binary: OCI media types, one layer holding the binary at
// /usr/local/bin/sync and /tmp with fixed headers, run as 65532 with the binary as entrypoint,
// labelled with source, version and revision; built twice, the same digest.
func TestImageOfOneBinary(t *testing.T) {
	bin := buildHello(t, "amd64", false)
	o := Options{Binaries: []string{bin}, Version: "v1.2.3", Revision: "abc123", Source: DefaultSource, Created: epoch}
	img, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Index != nil || !slices.Equal(img.Platforms, []string{"linux/amd64"}) {
		t.Fatalf("built %v (index %v)", img.Platforms, img.Index != nil)
	}
	mf, err := img.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if mf.MediaType != types.OCIManifestSchema1 || mf.Config.MediaType != types.OCIConfigJSON || len(mf.Layers) != 1 || mf.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("manifest %+v", mf)
	}
	if mf.Annotations[labelVersion] != "v1.2.3" || mf.Annotations[labelRevision] != "abc123" || mf.Annotations[labelSource] != DefaultSource {
		t.Errorf("manifest annotations %v", mf.Annotations)
	}
	cf, err := img.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(epoch) ||
		!slices.Equal(c.Entrypoint, []string{BinaryPath}) || c.User != "65532:65532" || len(c.Cmd) != 0 {
		t.Errorf("config %+v", cf)
	}
	for k, want := range map[string]string{labelSource: DefaultSource, labelVersion: "v1.2.3", labelRevision: "abc123"} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(epoch) {
			t.Errorf("history %+v", h)
		}
	}
	layers, err := img.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: time %s, owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		switch h.Name {
		case "usr/local/bin/sync":
			got, _ := io.ReadAll(tr)
			if h.Mode != 0o755 || !bytes.Equal(got, want) {
				t.Errorf("binary: mode %o, %d bytes, the same: %v", h.Mode, len(got), bytes.Equal(got, want))
			}
		case "tmp/":
			if h.Mode != 0o1777 {
				t.Errorf("tmp: mode %o", h.Mode)
			}
		}
	}
	if wantNames := []string{"tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/sync"}; !slices.Equal(names, wantNames) {
		t.Fatalf("layer holds %v, want %v", names, wantNames)
	}

	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if d2, err := again.Digest(); err != nil || d2 != d1 {
		t.Fatalf("rebuilt: %s %v, first %s", d2, err, d1)
	}
	o.Created = epoch.Add(time.Second)
	later, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	if d3, err := later.Digest(); err != nil || d3 == d1 {
		t.Fatalf("another creation time gave %s %v, first %s", d3, err, d1)
	}
	t.Logf("%s: %v; rebuilt to the same digest", d1, names)
}

// Two binaries make an index, each child for its binary's platform; the command writes it to
// an OCI layout named for containerd and pushes it, printing the same digest twice.
func TestIndexToLayoutAndRegistry(t *testing.T) {
	amd, arm := buildHello(t, "amd64", false), buildHello(t, "arm64", false)
	reg := testenv.NewRegistry(t)
	dir := t.TempDir()
	lay := filepath.Join(dir, "layout")
	ref := reg.Host + "/ferry/sync:v1.2.3"
	var out, errb bytes.Buffer
	args := []string{"--binary", amd, "--binary", arm, "--version", "v1.2.3", "--created", "1767225600", "--layout", lay, "--push", ref, "--plain-http"}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	digest := strings.TrimSpace(out.String())
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("printed %q", out.String())
	}
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != digest ||
		im.Manifests[0].Annotations[containerdRef] != "ferry.local/ferry/sync:v1.2.3" || im.Manifests[0].Annotations[refName] != "v1.2.3" {
		t.Fatalf("layout index.json: %+v", im.Manifests)
	}
	idx, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	children, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range children.Manifests {
		platforms = append(platforms, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Platform().String() != m.Platform.String() || !cf.Created.Time.Equal(time.Unix(1767225600, 0)) {
			t.Errorf("%s: config for %s created %s", m.Platform, cf.Platform(), cf.Created)
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) || children.MediaType != types.OCIImageIndex {
		t.Fatalf("index %s of %v", children.MediaType, platforms)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Fatalf("registry holds %s, built %s", desc.Digest, digest)
	}
	// The layout's folder must be new: nothing is appended to an old image.
	if err := run(context.Background(), args[:len(args)-3], io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second write to the layout: %v", err)
	}
	t.Logf("index %s (%v) in %s and at %s", digest, platforms, lay, ref)
}

// What cannot run on an empty base, or cannot be told apart, is refused.
func TestRefusesWhatCannotRun(t *testing.T) {
	dynamic := buildHello(t, "amd64", true)
	amd := buildHello(t, "amd64", false)
	text := filepath.Join(t.TempDir(), "script")
	os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"dynamic", []string{"--binary", dynamic, "--layout", t.TempDir()}, "dynamically linked"},
		{"script", []string{"--binary", text, "--layout", t.TempDir()}, "not a Linux executable"},
		{"same platform twice", []string{"--binary", amd, "--binary", amd, "--layout", t.TempDir()}, "linux/amd64 is also"},
		{"no binary", []string{"--layout", t.TempDir()}, "--binary: give"},
		{"nowhere to put it", []string{"--binary", amd}, "give --layout DIR, --push REF, or both"},
		{"bad created", []string{"--binary", amd, "--layout", t.TempDir(), "--created", "yesterday"}, `--created "yesterday"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestParseCreated(t *testing.T) {
	for _, tc := range []struct {
		flag, env string
		want      time.Time
	}{
		{"", "", time.Unix(0, 0)},
		{"", "1767225600", time.Unix(1767225600, 0)},
		{"2026-01-02T03:04:05Z", "1767225600", epoch},
		{"1767225600", "", time.Unix(1767225600, 0)},
	} {
		got, err := parseCreated(tc.flag, tc.env)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseCreated(%q, %q) = %s, %v; want %s", tc.flag, tc.env, got, err, tc.want)
		}
	}
	if _, err := parseCreated("", "soon"); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}

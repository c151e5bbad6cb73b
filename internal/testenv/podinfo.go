package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// podinfoDir is the folder `make tools` fills from the podinfo module: bin/{podinfo,podcli},
// chart/, kustomize/ and ui/, next to the tools' bin folder.
func podinfoDir() (string, error) {
	bin, err := ToolPath("kubectl")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(bin)), "share", "podinfo")
	if _, err := os.Stat(filepath.Join(dir, "bin", "podinfo")); err != nil {
		return "", fmt.Errorf("podinfo not found in %s: run 'make tools' to build it", dir)
	}
	return dir, nil
}

// PodinfoChart is the folder of podinfo's Helm chart as its module ships it.
func PodinfoChart() (string, error) {
	dir, err := podinfoDir()
	return filepath.Join(dir, "chart"), err
}

// PodinfoKustomize is the folder of podinfo's kustomize manifests as its module ships them.
func PodinfoKustomize() (string, error) {
	dir, err := podinfoDir()
	return filepath.Join(dir, "kustomize"), err
}

// PodinfoImage is podinfo's image laid out as its Dockerfile lays it out, on an empty base:
// /home/app/podinfo (the command its chart and kustomize manifests run, from workdir
// /home/app), /home/app/ui, and /usr/local/bin/podcli (their exec probes). A broken image has
// podcli where podinfo should be, so the container exits at once and never becomes ready.
func PodinfoImage(broken bool) (v1.Image, error) {
	dir, err := podinfoDir()
	if err != nil {
		return nil, err
	}
	server := filepath.Join(dir, "bin", "podinfo")
	if broken {
		server = filepath.Join(dir, "bin", "podcli")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"home/", "home/app/", "usr/", "usr/local/", "usr/local/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := tarFile(tw, server, "home/app/podinfo", 0o755); err != nil {
		return nil, err
	}
	if err := tarFile(tw, filepath.Join(dir, "bin", "podcli"), "usr/local/bin/podcli", 0o755); err != nil {
		return nil, err
	}
	ui := filepath.Join(dir, "ui")
	if err := filepath.WalkDir(ui, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(ui, p)
		target := filepath.ToSlash(filepath.Join("home/app/ui", rel))
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: target + "/", Mode: 0o755, Typeflag: tar.TypeDir})
		}
		return tarFile(tw, p, target, 0o644)
	}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return singleLayerImage(buf.Bytes(), func(c *v1.Config) {
		c.WorkingDir = "/home/app"
		c.Cmd = []string{"./podinfo"}
		c.User = "65532:65532"
	})
}

// PushPodinfo pushes PodinfoImage(broken) to ref ("host/repo:tag" on a plain-HTTP registry)
// and returns its digest.
func PushPodinfo(ctx context.Context, ref string, broken bool) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	img, err := PodinfoImage(broken)
	if err != nil {
		return "", fmt.Errorf("podinfo image %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// tarFile writes the file at path into tw as name.
func tarFile(tw *tar.Writer, path, name string, mode int64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = tw.Write(data)
	return err
}

package testenv

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ImportLayout imports the OCI layout folder dir into the node's containerd (k8s.io namespace),
// as an operator loads the agent's first image onto a node: the folder is archived as it is and
// given to `ctr images import`, which names each image of index.json by its
// io.containerd.image.name annotation (hack/image writes it), and also by digest
// (`--digests`), so that a Pod naming the image by digest finds it too.
func (n *Node) ImportLayout(ctx context.Context, dir string) error {
	archive := filepath.Join(n.dir, "images", filepath.Base(dir)+".oci.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return err
	}
	if err := tarFolder(dir, archive); err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	if err := n.ctrImport(ctx, archive, "--digests", "--all-platforms"); err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	return nil
}

// Images lists the image names the node's containerd holds for the CRI.
func (n *Node) Images(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, n.ctr, "-a", n.Socket, "-n", "k8s.io", "images", "list", "-q").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ctr images list: %v\n%s", err, out)
	}
	return strings.Fields(string(out)), nil
}

// ContainerLog returns what the container of a Pod printed, every run of it in order, from the
// kubelet's pod log folder (the API server cannot reach this node's kubelet for `kubectl logs`).
func (n *Node) ContainerLog(namespace, pod, container string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(n.dir, "kubelet", "pod-logs", namespace+"_"+pod+"_*", container))
	if err != nil || len(dirs) == 0 {
		return "", fmt.Errorf("no log folder for container %s of pod %s/%s", container, namespace, pod)
	}
	files, err := filepath.Glob(filepath.Join(dirs[0], "*.log"))
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		b.Write(data)
	}
	return b.String(), nil
}

// LoggedPods names the Pods of namespace whose logs the kubelet holds now. The kubelet removes a
// Pod's logs with the Pod, so a test that needs a replaced Pod's log reads it while it lasts.
func (n *Node) LoggedPods(namespace string) []string {
	dirs, _ := filepath.Glob(filepath.Join(n.dir, "kubelet", "pod-logs", namespace+"_*_*"))
	var pods []string
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), namespace+"_")
		if i := strings.LastIndex(rest, "_"); i > 0 {
			pods = append(pods, rest[:i])
		}
	}
	return pods
}

// tarFolder writes the files under dir into a tar file at dst, paths relative to dir.
func tarFolder(dir, dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		f.Close()
		return err
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NodeAvailable says why a Node cannot start on this machine (not root, or a tool or podinfo
// missing from `make tools`), or nil when it can.
func NodeAvailable() error {
	if _, err := nodeTools(); err != nil {
		return err
	}
	_, err := podinfoDir()
	return err
}

// WriteRegistryConfig writes what `sync registry-config` printed (out) into the node's
// containerd hosts folder, one hosts.toml per "# /etc/containerd/certs.d/<host>/hosts.toml"
// header, and returns the registry hosts it wrote. containerd reads these files at each pull.
func (n *Node) WriteRegistryConfig(out string) ([]string, error) {
	const prefix = "# /etc/containerd/certs.d/"
	var hosts []string
	var host string
	var body strings.Builder
	flush := func() error {
		if host == "" {
			return nil
		}
		d := filepath.Join(n.HostsDir, host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body.String()), 0o644); err != nil {
			return err
		}
		hosts = append(hosts, host)
		body.Reset()
		host = ""
		return nil
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		switch {
		case strings.HasPrefix(line, prefix):
			if err := flush(); err != nil {
				return nil, err
			}
			host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), prefix), "/hosts.toml")
		case strings.HasPrefix(line, "# CRI-O"):
			if err := flush(); err != nil {
				return nil, err
			}
		case host != "":
			body.WriteString(line)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no containerd hosts.toml in the registry configuration:\n%s", out)
	}
	return hosts, nil
}

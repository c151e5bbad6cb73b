package spec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/ferry-gitops/ferry/bundle"
)

// ClusterDocument is one Kubernetes object of the spec's cluster folder: the document of the
// cluster layer it becomes, and which object it is.
type ClusterDocument struct {
	// ClusterDocument is the layer's document: Source (the file's path relative to the
	// cluster folder, slash-separated), Index (its place in the file, from 1, counting only
	// documents that are not empty: a leading "---" or a document of comments does not count),
	// YAML (the object in its one canonical encoding, bundle.CanonicalClusterObject) and Object.
	bundle.ClusterDocument
	// APIVersion, Kind, Namespace and Name say which object it is.
	APIVersion, Kind, Namespace, Name string
}

// ClusterPath returns the folder cluster.path names, resolved from the spec's folder; "" when
// the spec has no cluster.
func (s *Spec) ClusterPath() string {
	if s.Cluster == nil || s.Cluster.Path == "" {
		return ""
	}
	if filepath.IsAbs(s.Cluster.Path) {
		return filepath.Clean(s.Cluster.Path)
	}
	return filepath.Join(s.Dir, s.Cluster.Path)
}

// ClusterDocuments reads the folder cluster.path names, checks it as Parse does, and returns
// its objects: files sorted by path, documents in file order. It reads the folder afresh, so
// what it returns is what it checked. It returns nil when the spec has no cluster.
func (s *Spec) ClusterDocuments() ([]ClusterDocument, error) {
	if s.ClusterPath() == "" {
		return nil, nil
	}
	docs, problems := s.readCluster()
	if len(problems) > 0 {
		return nil, &Error{Source: s.ClusterPath(), Problems: problems}
	}
	return docs, nil
}

// clusterFile is a manifest file found under the cluster folder.
type clusterFile struct {
	rel  string // slash-separated, relative to the folder
	path string
	size int64
}

// readCluster reads and checks the cluster folder; every problem names the file and, for a
// document, its index.
func (s *Spec) readCluster() ([]ClusterDocument, []string) {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, "cluster.path: "+fmt.Sprintf(format, args...))
	}
	written := s.Cluster.Path
	display := func(rel string) string { return filepath.ToSlash(filepath.Join(written, filepath.FromSlash(rel))) }
	root := s.ClusterPath()
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		add("%s: no such folder", written)
		return nil, problems
	case err != nil:
		add("%s: %v", written, err)
		return nil, problems
	case !fi.IsDir():
		add("%s: not a folder", written)
		return nil, problems
	}
	// A link naming the folder itself is followed; links inside it are refused.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		add("%s: %v", written, err)
		return nil, problems
	}
	var files []clusterFile
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			add("%s: not a regular file (%s): links, devices and other special files are refused", display(rel), d.Type())
			return nil
		}
		if ext := strings.ToLower(filepath.Ext(p)); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		if total > bundle.MaxClusterManifestsSize {
			return fmt.Errorf("the manifests are larger than %d bytes together (at %s)", bundle.MaxClusterManifestsSize, display(rel))
		}
		files = append(files, clusterFile{rel: rel, path: p, size: info.Size()})
		return nil
	})
	if err != nil {
		add("%s: %v", written, err)
		return nil, problems
	}
	if len(problems) > 0 {
		return nil, problems
	}
	// Path order, as byte strings of the slash-separated relative paths.
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })

	var docs []ClusterDocument
	seen := map[string]string{} // object identity -> where it was first
	for _, f := range files {
		data, err := readBounded(f.path, f.size)
		if err != nil {
			add("%s: %v", display(f.rel), err)
			continue
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		index := 0
		for {
			raw, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				add("%s document %d: %v", display(f.rel), index+1, err)
				break
			}
			doc, empty, err := clusterDocument(raw)
			if empty {
				continue
			}
			index++
			where := fmt.Sprintf("%s document %d", display(f.rel), index)
			if err != nil {
				add("%s: %v", where, err)
				continue
			}
			doc.Source, doc.Index = f.rel, index
			id := objectIdentity(doc.APIVersion, doc.Kind, doc.Namespace, doc.Name)
			if first, ok := seen[id]; ok {
				add("%s: %s %s is already defined by %s", where, doc.Kind, qualified(doc.Namespace, doc.Name), first)
				continue
			}
			seen[id] = where
			docs = append(docs, doc)
		}
	}
	if len(problems) == 0 && len(docs) == 0 {
		add("%s: holds no Kubernetes objects (*.yaml or *.yml files)", written)
	}
	// The layer holds each document re-encoded after a "# Source:" line; it is bounded too.
	layerDocs := make([]bundle.ClusterDocument, len(docs))
	for i, d := range docs {
		layerDocs[i] = d.ClusterDocument
	}
	if encoded := bundle.ClusterLayerSize(layerDocs); encoded > bundle.MaxClusterManifestsSize {
		add("%s: the manifests are %d bytes once encoded for the bundle, more than %d", written, encoded, bundle.MaxClusterManifestsSize)
	}
	return docs, problems
}

// readBounded reads a file whose size was found to be size, and refuses it if it grew.
func readBounded(path string, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("changed while it was read")
	}
	return data, nil
}

// clusterDocument checks one YAML document and returns it canonically encoded; empty is true
// for a document that holds nothing (only comments or whitespace).
func clusterDocument(raw []byte) (doc ClusterDocument, empty bool, err error) {
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return doc, false, fmt.Errorf("not valid YAML: %v", err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return doc, true, nil
	}
	obj, canonical, err := bundle.CanonicalClusterObject(j)
	if err != nil {
		return doc, false, err
	}
	str := func(m map[string]any, key string) (string, error) {
		v, ok := m[key]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s: want a string", key)
		}
		return s, nil
	}
	if doc.APIVersion, err = str(obj, "apiVersion"); err != nil {
		return doc, false, err
	}
	if doc.Kind, err = str(obj, "kind"); err != nil {
		return doc, false, err
	}
	meta, ok := obj["metadata"].(map[string]any)
	if !ok && obj["metadata"] != nil {
		return doc, false, fmt.Errorf("metadata: want a mapping")
	}
	if ok {
		if doc.Name, err = str(meta, "name"); err != nil {
			return doc, false, fmt.Errorf("metadata.%v", err)
		}
		if doc.Namespace, err = str(meta, "namespace"); err != nil {
			return doc, false, fmt.Errorf("metadata.%v", err)
		}
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"apiVersion", doc.APIVersion}, {"kind", doc.Kind}, {"metadata.name", doc.Name}} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return doc, false, fmt.Errorf("not a Kubernetes object: %s required", strings.Join(missing, ", "))
	}
	doc.YAML = canonical
	// The reader accepts a document only in this one encoding, and only if reading it gives
	// the object again: a value that does not survive that (a number too large for an int64
	// or a float64 to hold exactly) would be refused there, so it is refused here.
	j2, err := yaml.YAMLToJSON(doc.YAML)
	if err == nil {
		var again []byte
		if _, again, err = bundle.CanonicalClusterObject(j2); err == nil && !bytes.Equal(again, doc.YAML) {
			err = errors.New("a value changes when written and read again (a number too large to hold exactly?)")
		}
	}
	if err != nil {
		return doc, false, fmt.Errorf("encode: %v", err)
	}
	return doc, false, nil
}

// objectIdentity is what makes two documents the same object: the API group (not the
// version), the kind, the namespace and the name.
func objectIdentity(apiVersion, kind, namespace, name string) string {
	group := ""
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		group = g
	}
	return group + "\x00" + kind + "\x00" + namespace + "\x00" + name
}

func qualified(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Command fuzzseeds writes the seed corpora of the bundle package's fuzz targets into
// bundle/testdata/fuzz: valid inputs and known-hostile ones, in `go test` corpus format.
// Run it from the repository root: go run ./hack/fuzzseeds
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
)

const out = "bundle/testdata/fuzz"

func main() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "fuzzseeds-")
	check(err)
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "layout")
	l, err := bundle.NewLayout(dir)
	check(err)
	push := func(mt string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
		check(l.Push(ctx, d, bytes.NewReader(data)))
		return d
	}
	manifest := func(configType, layerType string, content []byte, subject *ocispec.Descriptor) ocispec.Descriptor {
		m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: push(configType, []byte("{}")), Layers: []ocispec.Descriptor{push(layerType, content)}, Subject: subject})
		check(err)
		return push(ocispec.MediaTypeImageManifest, m)
	}
	git := manifest("application/vnd.cncf.flux.config.v1+json", "application/vnd.cncf.flux.content.v1.tar+gzip", []byte("tree"), nil)
	sig := manifest("application/vnd.oci.image.config.v1+json", "application/vnd.dev.cosign.simplesigning.v1+json", []byte("sig"), &git)
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b := &bundle.Bundle{Sequence: 1, Created: created, Expires: created.Add(time.Hour), Items: []bundle.Item{{
		Name: "platform", Kind: bundle.KindGit, Source: "https://git.example/p.git", Revision: "abc", Descriptor: git,
		Referrers: []bundle.Referrer{{Descriptor: sig, Subject: git.Digest, Tag: "sha256-" + git.Digest.Encoded() + ".sig"}},
	}}}
	_, err = bundle.Write(ctx, l, b, nil)
	check(err)
	root, err := b.Marshal()
	check(err)
	var tarBuf bytes.Buffer
	_, err = bundle.WriteTar(ctx, &tarBuf, dir)
	check(err)
	tarball := tarBuf.Bytes()

	// FuzzParseRoot
	delta := *b
	delta.Sequence, delta.Previous, delta.Base = 2, digest.FromString("one"), digest.FromString("one")
	deltaRoot, err := delta.Marshal()
	check(err)
	seed("FuzzParseRoot", "valid", root)
	seed("FuzzParseRoot", "delta", deltaRoot)
	seed("FuzzParseRoot", "unknown-annotation", []byte(strings.Replace(string(root), `"dev.ferry.bundle.expires"`, `"dev.ferry.bundle.trust":"all","dev.ferry.bundle.expires"`, 1)))
	seed("FuzzParseRoot", "spaced", []byte(strings.Replace(string(root), `,`, `, `, 3)))
	seed("FuzzParseRoot", "sequence-zero", []byte(strings.Replace(string(root), `"dev.ferry.bundle.sequence":"1"`, `"dev.ferry.bundle.sequence":"01"`, 1)))

	// FuzzReadTar
	seed("FuzzReadTar", "valid", tarball)
	seed("FuzzReadTar", "truncated", tarball[:len(tarball)*2/3])
	seed("FuzzReadTar", "symlink", rewriteTar(tarball, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg {
			return &tar.Header{Name: h.Name, Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, nil
		}
		return h, data
	}))
	seed("FuzzReadTar", "traversal", rewriteTar(tarball, func(h *tar.Header, data []byte) (*tar.Header, []byte) {
		if h.Name == "index.json" {
			h.Name = "../index.json"
		}
		return h, data
	}))

	// FuzzParsePartList and FuzzOpenParts
	parts := filepath.Join(tmp, "parts")
	check(os.MkdirAll(parts, 0o755))
	list, err := bundle.Split(ctx, bytes.NewReader(tarball), parts, "b.tar", int64(len(tarball)/2+1))
	check(err)
	listJSON, err := os.ReadFile(filepath.Join(parts, bundle.PartListName("b.tar")))
	check(err)
	seed("FuzzParsePartList", "valid", listJSON)
	dup := *list
	dup.Parts = []bundle.Part{list.Parts[0], list.Parts[0]}
	seed("FuzzParsePartList", "duplicate", marshal(dup))
	bad := *list
	bad.Parts = append([]bundle.Part{}, list.Parts...)
	bad.Parts[0].Name = "../../etc/passwd"
	seed("FuzzParsePartList", "path", marshal(bad))

	a, b2 := []byte("first part."), []byte("second")
	whole := append(append([]byte{}, a...), b2...)
	pl := marshal(bundle.PartList{Format: bundle.PartsFormat, Size: int64(len(whole)), Digest: digest.FromBytes(whole), PartSize: int64(len(a)),
		Parts: []bundle.Part{{Name: "t.part-00001", Size: int64(len(a)), Digest: digest.FromBytes(a)}, {Name: "t.part-00002", Size: int64(len(b2)), Digest: digest.FromBytes(b2)}}})
	seed("FuzzOpenParts", "valid", pl, a, b2)
	seed("FuzzOpenParts", "swapped", pl, b2, a)
	seed("FuzzOpenParts", "short", pl, a[:3], b2)
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	check(err)
	return b
}

// rewriteTar returns the tar with each entry passed through edit.
func rewriteTar(b []byte, edit func(*tar.Header, []byte) (*tar.Header, []byte)) []byte {
	var buf bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(b)), tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		check(err)
		data, err := io.ReadAll(tr)
		check(err)
		h, data = edit(h, data)
		check(tw.WriteHeader(h))
		_, err = tw.Write(data)
		check(err)
	}
	check(tw.Close())
	return buf.Bytes()
}

// seed writes one corpus file of the `go test fuzz v1` format.
func seed(target, name string, args ...[]byte) {
	var s strings.Builder
	s.WriteString("go test fuzz v1\n")
	for _, a := range args {
		fmt.Fprintf(&s, "[]byte(%q)\n", a)
	}
	dir := filepath.Join(out, target)
	check(os.MkdirAll(dir, 0o755))
	check(os.WriteFile(filepath.Join(dir, name), []byte(s.String()), 0o644))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

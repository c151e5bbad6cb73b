package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/serve/registry"
	"github.com/ferry-gitops/ferry/verify"
)

// served is a cache holding one bundle: item "app" (registry.example/app:1, small blobs) and
// item "big" (registry.example/big:1, one layer larger than what the registry reads whole
// before answering), and a registry serving it.
type served struct {
	dir      string
	url      string
	layer    ocispec.Descriptor // app's small layer
	manifest ocispec.Descriptor // app's manifest
	big      ocispec.Descriptor // big's layer
	bigBytes []byte
}

func serveBundle(t *testing.T) *served {
	t.Helper()
	ctx := context.Background()
	s := testbundle.NewSigner(t)
	policy := verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
	f := testbundle.New(t, 1, "", nil)
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	m := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{ocispec.MediaTypeImageLayerGzip: big}, nil)
	f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: "big", Kind: bundle.KindImage, Source: "registry.example/big:1", Revision: string(m.Digest), Descriptor: m})
	f.Write(t, s.Sign)

	dir, snap := f.Imported(t, policy)
	srv, err := registry.New(ctx, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &served{dir: dir, url: hs.URL, layer: f.Layer, manifest: f.Manifest, bigBytes: big,
		big: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(big), Size: int64(len(big))}}
}

func (s *served) blobPath(d ocispec.Descriptor) string {
	return filepath.Join(s.dir, "blobs", "sha256", d.Digest.Encoded())
}

// response is what a client got: status, error code, and the body or the error reading it.
type response struct {
	status  int
	code    string
	body    []byte
	readErr error
}

func get(t *testing.T, method, url, rng string) response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := response{status: resp.StatusCode}
	r.body, r.readErr = io.ReadAll(resp.Body)
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if resp.StatusCode >= 400 && json.Unmarshal(r.body, &e) == nil && len(e.Errors) > 0 {
		r.code = e.Errors[0].Code
	}
	return r
}

// Blobs and manifests are verified as they are served: a damaged one the registry reads whole
// before answering is a 500; a large one streamed is cut off before its end (the status was
// sent already), so no client takes it for whole; only a blob the cache does not hold is a 404.
// Range requests are answered through io.ReadSeeker.
func TestServeVerifiedBlobs(t *testing.T) {
	app := "/v2/registry.example/app"
	big := "/v2/registry.example/big"
	cases := []struct {
		name   string
		damage func(s *served)
		method string
		path   func(s *served) string
		rng    string
		status int
		code   string
		// body checks what was received: nil for error answers.
		body func(s *served, r response) bool
	}{
		{"manifest", nil, "GET", func(s *served) string { return app + "/manifests/1" }, "", 200, "", func(s *served, r response) bool {
			return r.readErr == nil && digest.FromBytes(r.body) == s.manifest.Digest
		}},
		{"small blob", nil, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "", 200, "", func(s *served, r response) bool {
			return r.readErr == nil && digest.FromBytes(r.body) == s.layer.Digest
		}},
		{"large blob", nil, "GET", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "", 200, "", func(s *served, r response) bool {
			return r.readErr == nil && bytes.Equal(r.body, s.bigBytes)
		}},
		{"range of a small blob", nil, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "bytes=12-23", 206, "", func(s *served, r response) bool {
			return string(r.body) == "ferry layer "
		}},
		{"range of a large blob", nil, "GET", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "bytes=2000000-2000099", 206, "", func(s *served, r response) bool {
			return bytes.Equal(r.body, s.bigBytes[2000000:2000100])
		}},
		{"unknown blob", nil, "GET", func(s *served) string { return app + "/blobs/" + string(digest.FromString("x")) }, "", 404, "BLOB_UNKNOWN", nil},
		{"blob missing from the cache", func(s *served) { os.Remove(s.blobPath(s.layer)) }, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "", 404, "BLOB_UNKNOWN", nil},
		{"damaged small blob", func(s *served) { testbundle.Flip(t, s.blobPath(s.layer), 7) }, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "", 500, "UNKNOWN", nil},
		{"range of a damaged small blob", func(s *served) { testbundle.Flip(t, s.blobPath(s.layer), 7) }, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "bytes=12-23", 500, "UNKNOWN", nil},
		{"damaged manifest", func(s *served) { testbundle.Flip(t, s.blobPath(s.manifest), 3) }, "GET", func(s *served) string { return app + "/manifests/1" }, "", 500, "UNKNOWN", nil},
		{"truncated large blob", func(s *served) { os.Truncate(s.blobPath(s.big), 1<<20) }, "GET", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "", 500, "UNKNOWN", nil},
		{"truncated large blob, HEAD", func(s *served) { os.Truncate(s.blobPath(s.big), 1<<20) }, "HEAD", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "", 500, "", nil},
		{"unreadable blob (a folder)", func(s *served) { os.Remove(s.blobPath(s.layer)); os.Mkdir(s.blobPath(s.layer), 0o755) }, "GET", func(s *served) string { return app + "/blobs/" + string(s.layer.Digest) }, "", 500, "UNKNOWN", nil},
		// Found at the end of a streamed body: the 200 is sent, the body is cut short.
		{"damaged large blob", func(s *served) { testbundle.Flip(t, s.blobPath(s.big), 1000) }, "GET", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "", 200, "", func(s *served, r response) bool {
			return r.readErr != nil && len(r.body) < len(s.bigBytes)
		}},
		// A range cannot be checked against the blob's digest: it is served as it is on disk.
		{"range of a damaged large blob", func(s *served) { testbundle.Flip(t, s.blobPath(s.big), 1000) }, "GET", func(s *served) string { return big + "/blobs/" + string(s.big.Digest) }, "bytes=2000000-2000099", 206, "", func(s *served, r response) bool {
			return bytes.Equal(r.body, s.bigBytes[2000000:2000100])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := serveBundle(t)
			if tc.damage != nil {
				tc.damage(s)
			}
			r := get(t, tc.method, s.url+tc.path(s), tc.rng)
			if r.status != tc.status || r.code != tc.code {
				t.Fatalf("status %d %q, want %d %q (%d bytes, %v)", r.status, r.code, tc.status, tc.code, len(r.body), r.readErr)
			}
			if tc.body != nil && !tc.body(s, r) {
				t.Fatalf("body: %d bytes, read error %v", len(r.body), r.readErr)
			}
		})
	}
}

package registry

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/cache"
)

// Server serves the cache's current bundle. Reload switches to a newer one atomically.
type Server struct {
	cache  *cache.Cache
	logger *slog.Logger
	idx    atomic.Pointer[index]
}

// New indexes the cache's current bundle and returns a server for it.
func New(ctx context.Context, c *cache.Cache, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cache: c, logger: logger}
	return s, s.Reload(ctx)
}

// Reload indexes the cache's current bundle and serves it from then on.
func (s *Server) Reload(ctx context.Context) error {
	idx, err := build(ctx, s.cache)
	if err != nil {
		return err
	}
	s.idx.Store(idx)
	s.logger.Info("registry serving", "bundle", idx.sequence, "repositories", len(idx.repos))
	return nil
}

// Repositories lists the repositories served.
func (s *Server) Repositories() []string { return s.idx.Load().names() }

// errorCode is one of the distribution spec's error codes.
type errorCode string

const (
	codeBlobUnknown     errorCode = "BLOB_UNKNOWN"
	codeManifestUnknown errorCode = "MANIFEST_UNKNOWN"
	codeNameUnknown     errorCode = "NAME_UNKNOWN"
	codeDigestInvalid   errorCode = "DIGEST_INVALID"
	codeUnsupported     errorCode = "UNSUPPORTED"
	codeDenied          errorCode = "DENIED"
)

func writeError(w http.ResponseWriter, status int, code errorCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": string(code), "message": msg}}})
}

// ServeHTTP answers the read side of the OCI Distribution API; every write is refused.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "this registry is read-only: it serves what sync imported")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
		return
	case path == "_catalog":
		s.catalog(w, r)
		return
	}
	idx := s.idx.Load()
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		i := strings.LastIndex(path, kind)
		if i <= 0 {
			continue
		}
		name, ref := path[:i], path[i+len(kind):]
		repo, ok := idx.repos[name]
		if !ok {
			writeError(w, http.StatusNotFound, codeNameUnknown, fmt.Sprintf("repository %q is not in the current bundle", name))
			return
		}
		switch kind {
		case "/manifests/":
			s.manifest(w, r, repo, ref)
		case "/blobs/":
			s.blob(w, r, repo, ref)
		case "/tags/":
			if ref != "list" {
				break
			}
			s.tags(w, r, name, repo)
		case "/referrers/":
			s.referrers(w, r, repo, ref)
		}
		return
	}
	writeError(w, http.StatusNotFound, codeNameUnknown, "not found")
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request, repo *repository, ref string) {
	var desc ocispec.Descriptor
	var ok bool
	if d, err := digest.Parse(ref); err == nil {
		desc, ok = repo.manifests[d]
	} else {
		desc, ok = repo.tags[ref]
	}
	if !ok {
		writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %q is not in this repository", ref))
		return
	}
	f, err := s.cache.Fetch(r.Context(), desc)
	if err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, err.Error())
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Docker-Content-Digest", string(desc.Digest))
	w.Header().Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	w.Header().Set("ETag", `"`+string(desc.Digest)+`"`)
	if r.Method == http.MethodHead {
		return
	}
	io.Copy(w, f)
}

func (s *Server) blob(w http.ResponseWriter, r *http.Request, repo *repository, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a digest", ref))
		return
	}
	desc, ok := repo.blobs[d]
	if !ok {
		if desc, ok = repo.manifests[d]; !ok {
			writeError(w, http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in this repository", d))
			return
		}
	}
	rc, err := s.cache.Fetch(r.Context(), desc)
	if err != nil {
		writeError(w, http.StatusNotFound, codeBlobUnknown, err.Error())
		return
	}
	defer rc.Close()
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+string(d)+`"`)
	if f, ok := rc.(*os.File); ok {
		http.ServeContent(w, r, "", zeroTime, f) // Range, HEAD and Content-Length
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	if r.Method != http.MethodHead {
		io.Copy(w, rc)
	}
}

func (s *Server) tags(w http.ResponseWriter, r *http.Request, name string, repo *repository) {
	tags := make([]string, 0, len(repo.tags))
	for t := range repo.tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	tags, more := paginate(tags, r)
	if more != "" {
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%s&last=%s>; rel="next"`, name, r.URL.Query().Get("n"), more))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": tags})
}

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	names, more := paginate(s.idx.Load().names(), r)
	if more != "" {
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?n=%s&last=%s>; rel="next"`, r.URL.Query().Get("n"), more))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"repositories": names})
}

// paginate applies ?last= and ?n= to a sorted list and returns the page and, when more
// remain, the last element of the page.
func paginate(list []string, r *http.Request) ([]string, string) {
	if last := r.URL.Query().Get("last"); last != "" {
		i := sort.SearchStrings(list, last)
		if i < len(list) && list[i] == last {
			i++
		}
		list = list[i:]
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n >= 0 {
		if n == 0 {
			return []string{}, ""
		}
		if n < len(list) {
			return list[:n], list[n-1]
		}
	}
	return list, ""
}

func (s *Server) referrers(w http.ResponseWriter, r *http.Request, repo *repository, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a digest", ref))
		return
	}
	refs := repo.referrers[d]
	if at := r.URL.Query().Get("artifactType"); at != "" {
		var kept []ocispec.Descriptor
		for _, x := range refs {
			if x.ArtifactType == at {
				kept = append(kept, x)
			}
		}
		refs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if refs == nil {
		refs = []ocispec.Descriptor{}
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	json.NewEncoder(w).Encode(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: refs})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// zeroTime leaves Last-Modified unset: content-addressed blobs have no meaningful time.
var zeroTime time.Time

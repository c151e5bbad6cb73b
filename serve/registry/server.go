package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

// Server serves one snapshot of the cache. Reload switches to another atomically: a request
// reads the snapshot it started with to its end.
type Server struct {
	logger *slog.Logger
	idx    atomic.Pointer[index]
}

// New indexes the snapshot's bundle and returns a server for it.
func New(ctx context.Context, snap *cache.Snapshot, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{logger: logger}
	return s, s.Reload(ctx, snap)
}

// Reload indexes the snapshot's bundle and serves it from then on.
func (s *Server) Reload(ctx context.Context, snap *cache.Snapshot) error {
	idx, err := build(ctx, snap)
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
	codeUnknown         errorCode = "UNKNOWN"
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
			s.manifest(w, r, idx.snap, repo, ref)
		case "/blobs/":
			s.blob(w, r, idx.snap, repo, ref)
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

func (s *Server) manifest(w http.ResponseWriter, r *http.Request, snap *cache.Snapshot, repo *repository, ref string) {
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
	data, b, err := open(r, snap, desc)
	if err != nil {
		s.fetchError(w, r, codeManifestUnknown, err)
		return
	}
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Docker-Content-Digest", string(desc.Digest))
	w.Header().Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	w.Header().Set("ETag", `"`+string(desc.Digest)+`"`)
	switch {
	case b == nil:
		w.Write(data)
	case r.Method == http.MethodGet:
		defer b.Close()
		io.Copy(w, b)
		s.abortIfDamaged(r, b)
	default:
		b.Close()
	}
}

func (s *Server) blob(w http.ResponseWriter, r *http.Request, snap *cache.Snapshot, repo *repository, ref string) {
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
	data, b, err := open(r, snap, desc)
	if err != nil {
		s.fetchError(w, r, codeBlobUnknown, err)
		return
	}
	w.Header().Set("Docker-Content-Digest", string(d))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+string(d)+`"`)
	// http.ServeContent answers Range, HEAD, Content-Length and conditional requests from any
	// io.ReadSeeker: the small blob read whole, or the open blob (see open).
	if b == nil {
		http.ServeContent(w, r, "", zeroTime, bytes.NewReader(data))
		return
	}
	defer b.Close()
	http.ServeContent(w, r, "", zeroTime, b)
	s.abortIfDamaged(r, b)
}

// maxBuffered is the size up to which a blob or manifest is read whole, and verified, before
// it is answered, so that a damaged one is answered 500. A larger one is verified while it
// streams: damage found at its end can only abort the response (the client sees a body
// shorter than its Content-Length, never the whole damaged blob).
const maxBuffered = 1 << 20

// open reads what a GET answers with: a blob or manifest of up to maxBuffered bytes whole and
// verified (data), else the open blob (b, an io.ReadSeeker whose whole read from the start is
// verified and whose ranges are read as they are on disk). A HEAD opens the blob, which checks
// that the cache holds it at its size, and reads nothing.
func open(r *http.Request, snap *cache.Snapshot, desc ocispec.Descriptor) (data []byte, b *cache.Blob, err error) {
	if r.Method == http.MethodGet && desc.Size <= maxBuffered {
		data, err = snap.ReadAll(r.Context(), desc, maxBuffered)
		return data, nil, err
	}
	b, err = snap.Open(r.Context(), desc)
	return nil, b, err
}

// fetchError answers a blob that cannot be read: 404 when the cache does not hold it, 500 for
// anything else (damaged bytes, an I/O error), which is logged.
func (s *Server) fetchError(w http.ResponseWriter, r *http.Request, unknown errorCode, err error) {
	if errors.Is(err, cache.ErrNotFound) {
		writeError(w, http.StatusNotFound, unknown, err.Error())
		return
	}
	s.logger.Error("cannot read from the cache", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, codeUnknown, err.Error())
}

// abortIfDamaged aborts a response whose blob failed verification while it streamed: its status
// and headers are gone already, so the connection is cut before the body is complete.
func (s *Server) abortIfDamaged(r *http.Request, b *cache.Blob) {
	if err := b.Err(); err != nil {
		s.logger.Error("response aborted: the cache's blob is damaged", "path", r.URL.Path, "err", err)
		panic(http.ErrAbortHandler)
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

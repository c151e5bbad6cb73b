package gitserve

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
)

// Content types of the smart-HTTP protocol.
const (
	advertisementType = "application/x-git-upload-pack-advertisement"
	requestType       = "application/x-git-upload-pack-request"
	resultType        = "application/x-git-upload-pack-result"
)

// packWindow is the delta window of packs encoded for a request, as fetch uses.
const packWindow = 10

// storerLoader hands go-git's server the storer of one request.
type storerLoader struct{ st storer.Storer }

func (l storerLoader) Load(*transport.Endpoint) (storer.Storer, error) { return l.st, nil }

// session opens go-git's upload-pack session over a request's storer.
func session(st storer.Storer, name string) (transport.UploadPackSession, error) {
	ep := &transport.Endpoint{Protocol: "http", Path: "/" + name + ".git"}
	return server.NewServer(storerLoader{st}).NewUploadPackSession(ep, nil)
}

// advertise answers GET info/refs?service=git-upload-pack: go-git's advertisement of the
// repository's refs, with the shallow capability this package adds, after the service header.
func (s *Server) advertise(ctx context.Context, w http.ResponseWriter, rp *repo) {
	st := rp.open()
	defer st.Close()
	sess, err := session(st, rp.name)
	if err != nil {
		s.internalError(w, rp, "open upload-pack session", err)
		return
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		s.internalError(w, rp, "advertise refs", err)
		return
	}
	if err := ar.Capabilities.Set(capability.Shallow); err != nil {
		s.internalError(w, rp, "advertise refs", err)
		return
	}
	ar.Prefix = [][]byte{[]byte("# service=git-upload-pack"), pktline.Flush}
	var buf bytes.Buffer
	if err := ar.Encode(&buf); err != nil {
		s.internalError(w, rp, "advertise refs", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", advertisementType)
	noCache(h)
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

// internalError answers 500 and logs the error with the repository's name. The client is told
// the step only: the error may name the server's files.
func (s *Server) internalError(w http.ResponseWriter, rp *repo, what string, err error) {
	s.log.Error("git request failed", "repository", rp.name, "step", what, "error", err)
	plainError(w, http.StatusInternalServerError, fmt.Sprintf("%s.git: %s failed: %s", rp.name, what, internalCause))
}

// internalCause is what a client is told of an error on the server's side.
const internalCause = "internal error, the cause is in the server's log"

// publicError is an error about what the client sent, whose text may be sent back to it; the
// text of any other error stays in the server's log (it may name the server's files).
type publicError struct{ msg string }

func (e *publicError) Error() string { return e.msg }

func public(format string, a ...any) error { return &publicError{fmt.Sprintf(format, a...)} }

// clientMessage is the text of err a client may see.
func clientMessage(err error) string {
	if p := (*publicError)(nil); errors.As(err, &p) {
		return p.msg
	}
	return internalCause
}

// uploadRequest is a parsed POST git-upload-pack body.
type uploadRequest struct {
	*packp.UploadPackRequest
	// done is false for a negotiation round of a stateless client: it waits for ACK/NAK only.
	done bool
	// wantsOnly is a request that ends after its wants: a deepening client asking for the
	// shallow list alone before it negotiates.
	wantsOnly bool
}

// parseUploadRequest parses an upload-pack request: wants, capabilities, shallows and depth
// (go-git's decoder), then haves up to done.
func parseUploadRequest(body []byte) (*uploadRequest, error) {
	r := bytes.NewReader(body)
	req := &uploadRequest{UploadPackRequest: packp.NewUploadPackRequest()}
	if err := req.UploadRequest.Decode(r); err != nil {
		return nil, err
	}
	req.wantsOnly = r.Len() == 0
	sc := pktline.NewScanner(r)
	for sc.Scan() {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\n"))
		switch {
		case len(line) == 0: // the flush ending a round of haves
		case bytes.HasPrefix(line, []byte("have ")):
			h := string(line[len("have "):])
			if !plumbing.IsHash(h) {
				return nil, fmt.Errorf("malformed have line %q", line)
			}
			req.Haves = append(req.Haves, plumbing.NewHash(h))
		case string(line) == "done":
			req.done = true
			return req, nil
		default:
			return nil, fmt.Errorf("unexpected line %q", line)
		}
	}
	return req, sc.Err()
}

// readBody reads a request body, gzip-decoded when git sent it so, bounded by MaxRequestBody.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	var body io.Reader = http.MaxBytesReader(w, r.Body, MaxRequestBody)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q: Ferry takes gzip or none", enc)
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxRequestBody+1))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || len(b) > MaxRequestBody:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", MaxRequestBody)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	return b, http.StatusOK, nil
}

// uploadPack answers POST git-upload-pack. A negotiation round gets its ACK/NAK; a request
// with done gets the pack: the stored pack as it is for a whole clone, a pack encoded here for a
// shallow request, go-git's upload-pack session otherwise.
func (s *Server) uploadPack(w http.ResponseWriter, r *http.Request, rp *repo) {
	if ct := r.Header.Get("Content-Type"); ct != requestType {
		plainError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q, want %s", ct, requestType))
		return
	}
	body, status, err := readBody(w, r)
	if err != nil {
		plainError(w, status, err.Error())
		return
	}
	req, err := parseUploadRequest(body)
	if err != nil {
		plainError(w, http.StatusBadRequest, fmt.Sprintf("%s.git: upload-pack request: %v", rp.name, err))
		return
	}
	st := rp.open()
	defer st.Close()

	h := w.Header()
	h.Set("Content-Type", resultType)
	noCache(h)
	if err := s.checkRequest(st, req); err != nil {
		w.WriteHeader(http.StatusOK)
		writeErr(w, err)
		return
	}
	// Haves the repository lacks (commits of the client's own) cannot be common.
	haves := req.Haves[:0:0]
	for _, h := range req.Haves {
		if st.HasEncodedObject(h) == nil {
			haves = append(haves, h)
		}
	}
	req.Haves = haves
	shallow := !req.Depth.IsZero() || len(req.Shallows) > 0
	cost := &budget{ctx: r.Context(), left: s.limits.MaxObjects, limit: s.limits.MaxObjects,
		bytesLeft: s.limits.MaxPackBytes, bytesLimit: s.limits.MaxPackBytes}

	if !req.done {
		// A stateless client resends its wants with every round but not the haves of the rounds
		// before, and without multi_ack it stops at the first ACK: so NAK, and let it send its
		// haves up to done.
		var sh *shallowPlan
		if !req.Depth.IsZero() {
			if sh, err = planShallow(st, req, nil, cost); err != nil {
				s.log.Warn("git upload-pack refused", "repository", rp.name, "error", err)
				w.WriteHeader(http.StatusOK)
				writeErr(w, err)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		if sh != nil {
			sh.update.Encode(w)
		}
		if !req.wantsOnly {
			(&packp.ServerResponse{}).Encode(w, false)
		}
		return
	}

	key, cacheable := packKey(rp.digest, req)
	switch {
	case !shallow && len(req.Haves) == 0 && slices.Contains(req.Wants, rp.commit) && req.Capabilities.Supports(capability.OFSDelta):
		err = sendStoredPack(w, rp.pack)
	case cacheable:
		if answer, ok := s.packs.get(key); ok {
			s.log.Info("git upload-pack answered from the pack cache", "repository", rp.name, "bytes", len(answer))
			w.WriteHeader(http.StatusOK)
			_, err = w.Write(answer)
			break
		}
		c := &capture{limit: s.packs.max / 8}
		if err = s.sendPack(w, io.MultiWriter(w, c), st, req, cost); err == nil && !c.over {
			s.packs.put(key, rp.digest, c.buf.Bytes())
		}
	default:
		err = s.sendPack(w, w, st, req, cost)
	}
	if err != nil {
		s.log.Error("git upload-pack failed", "repository", rp.name, "error", err)
		var before *beforeWrite
		if errors.As(err, &before) {
			w.WriteHeader(http.StatusOK)
			writeErr(w, before.err)
		}
	}
}

// budget bounds the objects one request may make the server walk or send: each object read
// to negotiate (the client's haves and their history, the commits within depth) or to pack
// costs one, and the objects packed may not be larger together than the bytes. The walk also
// stops when the request's context ends (its deadline).
type budget struct {
	ctx                   context.Context
	left, limit           int
	bytesLeft, bytesLimit int64
}

// spendBytes takes an object's size (as stored, before deltas) of the bytes budget.
func (b *budget) spendBytes(n int64) error {
	if b.bytesLeft -= n; b.bytesLeft < 0 {
		return public("this fetch would pack more than %d bytes of objects (the server's limit): clone afresh, a whole clone is sent as it is stored", b.bytesLimit)
	}
	return nil
}

// objectSizer is go-git's filesystem storage: it tells an object's size without reading it.
type objectSizer interface {
	EncodedObjectSize(plumbing.Hash) (int64, error)
}

// spend takes one object of the budget.
func (b *budget) spend() error {
	if b.left%1024 == 0 {
		if err := b.ctx.Err(); err != nil {
			return err
		}
	}
	if b.left--; b.left < 0 {
		return public("this fetch needs more than %d objects walked or packed (the server's limit): clone afresh, a whole clone is sent as it is stored", b.limit)
	}
	return nil
}

// beforeWrite marks an error that happened before anything was written, so the client can still
// be told with an ERR line.
type beforeWrite struct{ err error }

func (e *beforeWrite) Error() string { return e.err.Error() }

// checkRequest refuses capabilities Ferry did not advertise and wants the repository lacks.
func (s *Server) checkRequest(st storer.EncodedObjectStorer, req *uploadRequest) error {
	for _, c := range req.Capabilities.All() {
		switch c {
		case capability.Agent, capability.OFSDelta, capability.Shallow:
		default:
			return public("capability %s is not supported", c)
		}
	}
	if len(req.Wants) == 0 {
		return public("no want line")
	}
	for _, h := range req.Wants {
		if err := st.HasEncodedObject(h); err != nil {
			return public("not our ref %s", h)
		}
	}
	if _, ok := req.Depth.(packp.DepthCommits); !ok && !req.Depth.IsZero() {
		return public("only deepen <n> is supported")
	}
	return nil
}

// writeErr sends an ERR pkt-line, which git shows as "remote error: …": err's text if it is
// about the request, internalCause otherwise.
func writeErr(w io.Writer, err error) {
	pktline.NewEncoder(w).Encodef("ERR upload-pack: %s\n", clientMessage(err))
}

// sendStoredPack answers a whole clone: the stored pack holds exactly every object reachable
// from the commit, so it is sent as it is, streamed from disk, after NAK.
func sendStoredPack(w http.ResponseWriter, pack string) error {
	f, err := os.Open(pack)
	if err != nil {
		return &beforeWrite{err}
	}
	defer f.Close()
	w.WriteHeader(http.StatusOK)
	if err := (&packp.ServerResponse{}).Encode(w, false); err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

// shallowPlan is the answer to a shallow request: the shallow-update section and the objects
// of the commits within depth.
type shallowPlan struct {
	update packp.ShallowUpdate
	// objects are the commits within depth and any want that is not a commit, with their types.
	objects []typedObject
}

type typedObject struct {
	h plumbing.Hash
	t plumbing.ObjectType
}

// planShallow walks the commits from the wants, breadth first, down to the requested depth (or,
// without deepen, down to the client's shallow commits and the commits it has). A commit at the
// depth that has parents is a new shallow boundary; a commit the client had as shallow that now
// has its parents sent is unshallowed. Each commit costs one of the budget.
func planShallow(st storer.EncodedObjectStorer, req *uploadRequest, have map[plumbing.Hash]bool, cost *budget) (*shallowPlan, error) {
	depth := 0
	if d, ok := req.Depth.(packp.DepthCommits); ok {
		depth = int(d)
	}
	client := map[plumbing.Hash]bool{}
	for _, h := range req.Shallows {
		client[h] = true
	}
	type entry struct {
		h plumbing.Hash
		d int
	}
	plan := &shallowPlan{}
	seen := map[plumbing.Hash]bool{}
	var queue []entry
	for _, h := range req.Wants {
		if !seen[h] {
			seen[h] = true
			queue = append(queue, entry{h, 1})
		}
	}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		if depth == 0 && have[e.h] {
			continue // the client has it and its history
		}
		if err := cost.spend(); err != nil {
			return nil, err
		}
		o, err := st.EncodedObject(plumbing.AnyObject, e.h)
		if err != nil {
			return nil, fmt.Errorf("object %s: %w", e.h, err)
		}
		plan.objects = append(plan.objects, typedObject{e.h, o.Type()})
		if o.Type() != plumbing.CommitObject {
			// A want that is not a commit (a tree or a blob) is sent with what it holds.
			continue
		}
		c, err := object.DecodeCommit(st, o)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", e.h, err)
		}
		switch {
		case depth > 0 && e.d >= depth:
			if c.NumParents() > 0 && !client[e.h] {
				plan.update.Shallows = append(plan.update.Shallows, e.h)
			}
			continue
		case depth == 0 && client[e.h]:
			continue
		case depth > 0 && client[e.h] && c.NumParents() > 0:
			plan.update.Unshallows = append(plan.update.Unshallows, e.h)
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, entry{p, e.d + 1})
			}
		}
	}
	return plan, nil
}

// sendPack answers a request with done that is not a whole clone served from the stored pack
// (a shallow request, one with haves, or one without ofs-delta): the shallow-update section
// when it deepens, ACK or NAK, then a pack of the commits within depth (all, without deepen)
// and their trees, less what the client has. Everything it walks and packs is bounded by cost:
// over it, the request is refused before anything is encoded.
// The answer is written to out, which is w or writes to w.
func (s *Server) sendPack(w http.ResponseWriter, out io.Writer, st storer.EncodedObjectStorer, req *uploadRequest, cost *budget) error {
	client := map[plumbing.Hash]bool{}
	for _, h := range req.Shallows {
		client[h] = true
	}
	// What the client has: the haves and their history, down to its shallow commits.
	have := map[plumbing.Hash]bool{}
	for _, h := range req.Haves {
		if err := walkCommits(st, h, client, have, cost); err != nil {
			return &beforeWrite{err}
		}
	}
	plan, err := planShallow(st, req, have, cost)
	if err != nil {
		return &beforeWrite{err}
	}
	var objs []plumbing.Hash
	sent := map[plumbing.Hash]bool{}
	for _, o := range plan.objects {
		if err := addObject(st, o.h, o.t, have, sent, &objs, cost); err != nil {
			return &beforeWrite{err}
		}
	}
	w.WriteHeader(http.StatusOK)
	if !req.Depth.IsZero() {
		if err := plan.update.Encode(out); err != nil {
			return err
		}
	}
	resp := &packp.ServerResponse{}
	if len(req.Haves) > 0 {
		resp.ACKs = req.Haves[:1]
	}
	if err := resp.Encode(out, false); err != nil {
		return err
	}
	// Without ofs-delta, deltas name their base by hash.
	_, err = packfile.NewEncoder(out, st, !req.Capabilities.Supports(capability.OFSDelta)).Encode(objs, packWindow)
	return err
}

// walkCommits marks a commit, its tree and its ancestors' (not beyond stop) as had.
func walkCommits(st storer.EncodedObjectStorer, h plumbing.Hash, stop, have map[plumbing.Hash]bool, cost *budget) error {
	queue := []plumbing.Hash{h}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if have[h] {
			continue
		}
		if err := cost.spend(); err != nil {
			return err
		}
		c, err := object.GetCommit(st, h)
		if err != nil {
			return fmt.Errorf("have %s: %w", h, err)
		}
		have[h] = true
		if err := markTree(st, c.TreeHash, have, cost); err != nil {
			return err
		}
		if stop[h] {
			continue
		}
		queue = append(queue, c.ParentHashes...)
	}
	return nil
}

// markTree marks a tree and everything under it as had.
func markTree(st storer.EncodedObjectStorer, h plumbing.Hash, have map[plumbing.Hash]bool, cost *budget) error {
	if have[h] {
		return nil
	}
	if err := cost.spend(); err != nil {
		return err
	}
	t, err := object.GetTree(st, h)
	if err != nil {
		return fmt.Errorf("tree %s: %w", h, err)
	}
	have[h] = true
	for _, e := range t.Entries {
		switch {
		case e.Mode == filemode.Submodule:
		case e.Mode == filemode.Dir:
			if err := markTree(st, e.Hash, have, cost); err != nil {
				return err
			}
		default:
			have[e.Hash] = true
		}
	}
	return nil
}

// addObject adds an object of type t to send and, for a commit or a tree, what it holds that
// the client lacks.
func addObject(st storer.EncodedObjectStorer, h plumbing.Hash, t plumbing.ObjectType, have, sent map[plumbing.Hash]bool, objs *[]plumbing.Hash, cost *budget) error {
	if have[h] || sent[h] {
		return nil
	}
	if err := cost.spend(); err != nil {
		return err
	}
	if sz, ok := st.(objectSizer); ok {
		n, err := sz.EncodedObjectSize(h)
		if err != nil {
			return fmt.Errorf("object %s: %w", h, err)
		}
		if err := cost.spendBytes(n); err != nil {
			return err
		}
	}
	sent[h] = true
	*objs = append(*objs, h)
	switch t {
	case plumbing.CommitObject:
		c, err := object.GetCommit(st, h)
		if err != nil {
			return fmt.Errorf("commit %s: %w", h, err)
		}
		return addObject(st, c.TreeHash, plumbing.TreeObject, have, sent, objs, cost)
	case plumbing.TreeObject:
		tree, err := object.GetTree(st, h)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h, err)
		}
		for _, e := range tree.Entries {
			switch e.Mode {
			case filemode.Submodule:
			case filemode.Dir:
				if err := addObject(st, e.Hash, plumbing.TreeObject, have, sent, objs, cost); err != nil {
					return err
				}
			default:
				if err := addObject(st, e.Hash, plumbing.BlobObject, have, sent, objs, cost); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

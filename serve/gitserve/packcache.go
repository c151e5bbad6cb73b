package gitserve

import (
	"bytes"
	"container/list"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/opencontainers/go-digest"
)

// packCache keeps the answers encoded for requests without haves (a shallow clone, as Flux
// makes on every reconcile; a clone without ofs-delta), by repository pack and request, so the
// same request is not walked and delta-encoded again. It holds at most max bytes, an answer at
// most max/8; the least recently used go first.
type packCache struct {
	max int64

	mu      sync.Mutex
	size    int64
	order   *list.List // of *cachedPack, most recently used first
	entries map[string]*list.Element
}

type cachedPack struct {
	key    string
	digest digest.Digest
	answer []byte
}

func newPackCache(max int64) *packCache {
	return &packCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

// packKey is the cache key of a request to the repository of pack d, and whether its answer may
// be cached: only requests without haves are, the answer to them depends on nothing else.
func packKey(d digest.Digest, req *uploadRequest) (string, bool) {
	if len(req.Haves) > 0 {
		return "", false
	}
	var b strings.Builder
	b.WriteString(string(d))
	for _, part := range [][]plumbing.Hash{req.Wants, req.Shallows} {
		hs := make([]string, len(part))
		for i, h := range part {
			hs[i] = h.String()
		}
		slices.Sort(hs)
		b.WriteString("|" + strings.Join(hs, ","))
	}
	depth := 0
	if d, ok := req.Depth.(packp.DepthCommits); ok {
		depth = int(d)
	}
	b.WriteString("|depth=" + strconv.Itoa(depth))
	if req.Capabilities.Supports(capability.OFSDelta) {
		b.WriteString("|ofs")
	}
	return b.String(), true
}

// get returns the answer cached for key.
func (c *packCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedPack).answer, true
}

// put caches an answer, unless it is larger than an eighth of the cache.
func (c *packCache) put(key string, d digest.Digest, answer []byte) {
	n := int64(len(answer))
	if n > c.max/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	c.entries[key] = c.order.PushFront(&cachedPack{key: key, digest: d, answer: answer})
	c.size += n
	for c.size > c.max {
		c.remove(c.order.Back())
	}
}

// drop removes the answers of the repositories of packs not in keep.
func (c *packCache) drop(keep func(digest.Digest) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if !keep(e.Value.(*cachedPack).digest) {
			c.remove(e)
		}
		e = next
	}
}

func (c *packCache) remove(e *list.Element) {
	p := c.order.Remove(e).(*cachedPack)
	delete(c.entries, p.key)
	c.size -= int64(len(p.answer))
}

// capture keeps a copy of what is written, up to limit bytes; past it, it keeps nothing. It
// never fails a write.
type capture struct {
	limit int64
	buf   bytes.Buffer
	over  bool
}

func (c *capture) Write(p []byte) (int, error) {
	if !c.over {
		if int64(c.buf.Len()+len(p)) > c.limit {
			c.over = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

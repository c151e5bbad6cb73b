package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// collectedDir remembers the bundles garbage collection dropped: one small file each, named by
// the root's hex digest and holding its sequence. A dropped bundle was accepted once; the agent
// uses this to tell an old copy still lying on a medium from a rollback attempt, after its
// record is gone.
const collectedDir = "collected"

// collected is what a file of collectedDir holds.
type collected struct {
	Sequence uint64        `json:"sequence"`
	Root     digest.Digest `json:"root"`
}

// noteCollected records that the bundle of r is being dropped. GC calls it before it removes the
// record, so a crash between the two leaves both, never neither.
func (c *Cache) noteCollected(r Record) error {
	dir := filepath.Join(c.dir, collectedDir)
	if err := mkdirDurable(dir); err != nil {
		return fmt.Errorf("cache %s: %w", c.dir, err)
	}
	b, err := json.Marshal(collected{Sequence: r.Sequence, Root: r.Root})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, r.Root.Encoded()), append(b, '\n'))
}

// AcceptedRoots returns the root of every bundle this cache ever accepted, with its sequence:
// the bundles it keeps (their records, but none newer than the state) and those garbage
// collection dropped.
func (c *Cache) AcceptedRoots() (map[digest.Digest]uint64, error) {
	out := map[digest.Digest]uint64{}
	recs, err := c.Records()
	if err != nil {
		return nil, err
	}
	st, err := c.State()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Sequence > st.Sequence {
			continue // written by an import that never committed: not accepted (see Fsck)
		}
		out[r.Root] = r.Sequence
	}
	entries, err := os.ReadDir(filepath.Join(c.dir, collectedDir))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue // a temporary file of an interrupted write
		}
		b, err := os.ReadFile(filepath.Join(c.dir, collectedDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", c.dir, err)
		}
		var col collected
		if err := json.Unmarshal(b, &col); err != nil || col.Root.Validate() != nil || col.Root.Encoded() != e.Name() {
			return nil, fmt.Errorf("cache %s: %s/%s is damaged (run 'sync fsck')", c.dir, collectedDir, e.Name())
		}
		out[col.Root] = col.Sequence
	}
	return out, nil
}

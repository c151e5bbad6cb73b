package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// rejectionsDir holds the agent's record of rejected bundles, beside the state: no bundle can
// write it, and 'sync status' lists it.
const rejectionsDir = "rejections"

// MaxRejections is how many rejections the cache keeps; recording one more drops the oldest.
const MaxRejections = 100

// Rejection is what the cache keeps of a bundle that was refused: where it was found, which
// bundle it claimed to be, and why it was refused. The bundle itself is never stored.
type Rejection struct {
	// Time is when it was rejected.
	Time time.Time `json:"time"`
	// Source names where the bundle was found ("dir /var/lib/ferry/drop"); Candidate names it
	// there (a file, an object key, a tag); Identity changes whenever the candidate's bytes may
	// have (path, size and modification time; an S3 ETag; a tag's digest).
	Source    string `json:"source"`
	Candidate string `json:"candidate"`
	Identity  string `json:"identity"`
	// Sequence and Root identify the bundle once its root was read (0 and "" before).
	Sequence uint64        `json:"sequence,omitempty"`
	Root     digest.Digest `json:"root,omitempty"`
	// Item and Check say what failed and which check (a bundle.Check: structure or trust).
	Item  string `json:"item,omitempty"`
	Check string `json:"check"`
	// Message is the whole error; Fix what to do about it.
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// State is the last accepted bundle the rejected one was checked against.
	State State `json:"state"`
}

// RecordRejection keeps r durably (one file, written atomically), dropping the oldest
// rejections beyond MaxRejections. It is for the writer (the agent that holds the lock).
func (c *Cache) RecordRejection(r Rejection) error {
	dir := filepath.Join(c.dir, rejectionsDir)
	if err := mkdirDurable(dir); err != nil {
		return fmt.Errorf("cache %s: %w", c.dir, err)
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	// Names sort in time order: nanoseconds zero-padded, then a random tie-breaker.
	name := fmt.Sprintf("%020d-%s.json", r.Time.UnixNano(), randomName())
	if err := writeFileAtomic(filepath.Join(dir, name), b); err != nil {
		return fmt.Errorf("cache %s: record rejection: %w", c.dir, err)
	}
	names, err := rejectionFiles(dir)
	if err != nil {
		return err
	}
	if len(names) <= MaxRejections {
		return nil
	}
	for len(names) > MaxRejections {
		if err := step("remove", filepath.Join(dir, names[0])); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		names = names[1:]
	}
	return syncDir(dir)
}

// Rejections returns the rejections the cache keeps, oldest first.
func (c *Cache) Rejections() ([]Rejection, error) {
	dir := filepath.Join(c.dir, rejectionsDir)
	names, err := rejectionFiles(dir)
	if err != nil {
		return nil, err
	}
	out := []Rejection{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue // dropped by the writer meanwhile
		}
		if err != nil {
			return nil, err
		}
		var r Rejection
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("rejection %s: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// rejectionFiles lists the rejection files of dir in time order; none when dir is missing.
func rejectionFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

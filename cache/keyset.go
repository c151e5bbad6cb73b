package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// keySetFile holds the agent's trusted keys as key statements left them (see agent/keys.go),
// beside state.json: in the cache's own folder, which no bundle writes (bundles reach only
// blobs/ and refs/, by digest and sequence).
const keySetFile = "keys.json"

// maxKeySet bounds what KeySet reads: a key set is a few KiB.
const maxKeySet = 1 << 20

// KeySet returns the key set file's content, nil when none was written.
func (c *Cache) KeySet() ([]byte, error) {
	path := filepath.Join(c.dir, keySetFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache key set %s: %w", path, err)
	}
	if fi.Size() > maxKeySet {
		return nil, fmt.Errorf("cache key set %s: %d bytes, at most %d", path, fi.Size(), maxKeySet)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cache key set %s: %w", path, err)
	}
	return b, nil
}

// WriteKeySet replaces the key set file atomically and durably (a synced temporary file, a
// rename, a synced folder). Only the writer (who holds the lock) writes it.
func (c *Cache) WriteKeySet(data []byte) error {
	if c.lock == nil {
		return errors.New("cache key set: the cache is open for reading only")
	}
	if err := writeFileAtomic(filepath.Join(c.dir, keySetFile), data); err != nil {
		return fmt.Errorf("cache key set %s: %w", filepath.Join(c.dir, keySetFile), err)
	}
	return nil
}

package medium

import (
	"fmt"

	"github.com/ferry-gitops/ferry/bundle"
)

// checkBundleName checks that name, its parts' names and its part list's name are plain file
// names that a reader accepts and S3FS opens.
func checkBundleName(name string) error {
	for _, n := range []string{name, bundle.PartListName(name), bundle.PartName(name, bundle.DefaultMaxParts)} {
		if !bundle.ValidPartName(n) {
			return fmt.Errorf("bundle name %q: want a plain file name (letters, digits, '.', '_', '-', no \"..\") of at most 243 characters", name)
		}
	}
	return nil
}

package discover

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// itemName makes a bundle item name from parts: lowercase letters, digits and "-", at most
// 128 characters (a long name keeps its start and ends with a hash of the whole).
func itemName(parts ...string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(strings.Join(parts, "-")) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	n := strings.Trim(b.String(), "-")
	if len(n) > 120 {
		sum := sha256.Sum256([]byte(n))
		n = strings.Trim(n[:110], "-") + "-" + hex.EncodeToString(sum[:])[:8]
	}
	if n == "" || n == "bundle" || n == "cluster" || strings.HasPrefix(n, "sha256-") {
		n = "x-" + n
	}
	return n
}

// namer hands out unique item names.
type namer struct{ used map[string]bool }

func (n *namer) take(name string) string {
	if !n.used[name] {
		n.used[name] = true
		return name
	}
	for i := 2; ; i++ {
		c := name + "-" + strconv.Itoa(i)
		if !n.used[c] {
			n.used[c] = true
			return c
		}
	}
}

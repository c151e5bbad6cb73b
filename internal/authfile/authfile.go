// Package authfile loads the files that protect Ferry's registry and Git remote, for sync serve
// and sync run alike: an htpasswd file of bcrypt entries and a file of bearer tokens.
package authfile

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Which file an error concerns.
const (
	HTPasswd     = "htpasswd"
	BearerTokens = "bearerTokens"
)

// Credentials are what clients may authenticate with.
type Credentials struct {
	// BasicAuth maps users to bcrypt hashes; nil: no basic authentication.
	BasicAuth map[string][]byte
	// BearerTokens are the tokens accepted as "Authorization: Bearer <token>"; nil: none.
	BearerTokens []string
}

// Error is a file that cannot protect the listener; File is HTPasswd or BearerTokens, Err
// names the file's path.
type Error struct {
	File string
	Err  error
}

func (e *Error) Error() string { return e.File + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Load reads the htpasswd file and the bearer-token file (either "" for none) by one rule: a
// file that cannot be read, does not parse, holds a hash that is not bcrypt, or holds no entry
// at all (which would leave the listener open while it looks protected) is an *Error.
func Load(htpasswd, bearerTokens string) (Credentials, error) {
	var c Credentials
	if htpasswd != "" {
		users, err := loadHTPasswd(htpasswd)
		if err != nil {
			return c, &Error{HTPasswd, err}
		}
		if len(users) == 0 {
			return c, &Error{HTPasswd, fmt.Errorf("%s has no user:bcrypt-hash entries", htpasswd)}
		}
		for _, u := range slices.Sorted(maps.Keys(users)) {
			if _, err := bcrypt.Cost(users[u]); err != nil {
				return c, &Error{HTPasswd, fmt.Errorf("%s: user %q: not a bcrypt hash: %w", htpasswd, u, err)}
			}
		}
		c.BasicAuth = users
	}
	if bearerTokens != "" {
		b, err := os.ReadFile(bearerTokens)
		if err != nil {
			return c, &Error{BearerTokens, err}
		}
		if c.BearerTokens = strings.Fields(string(b)); len(c.BearerTokens) == 0 {
			return c, &Error{BearerTokens, fmt.Errorf("%s holds no tokens", bearerTokens)}
		}
	}
	return c, nil
}

// loadHTPasswd reads bcrypt entries ("user:$2y$…") from an htpasswd file.
func loadHTPasswd(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users := map[string][]byte{}
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash (htpasswd -B)", path, n)
		}
		users[user] = []byte(hash)
	}
	return users, s.Err()
}

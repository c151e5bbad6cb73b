package authfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gitops/ferry/internal/authfile"
)

// One rule for sync serve and sync run: a file that cannot be read, does not parse, holds no
// entry or a hash that is not bcrypt is an *authfile.Error naming which file.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good, tokens := file("htpasswd", "# users\nnode:"+string(hash)+"\n"), file("tokens", "a\n b \n")
	creds, err := authfile.Load(good, tokens)
	if err != nil || len(creds.BasicAuth) != 1 || strings.Join(creds.BearerTokens, ",") != "a,b" {
		t.Fatalf("Load = %+v, %v", creds, err)
	}
	if creds, err := authfile.Load("", ""); err != nil || creds.BasicAuth != nil || creds.BearerTokens != nil {
		t.Fatalf("Load of no files = %+v, %v; want nothing", creds, err)
	}
	for _, tc := range []struct {
		name, htpasswd, tokens, file, says string
	}{
		{"htpasswd missing", filepath.Join(dir, "nope"), "", authfile.HTPasswd, "no such file"},
		{"htpasswd not user:hash", file("plain", "node:s3cret\n"), "", authfile.HTPasswd, "want user:bcrypt-hash"},
		{"htpasswd without entries", file("comments", "# nobody\n"), "", authfile.HTPasswd, "has no user:bcrypt-hash entries"},
		{"htpasswd hash broken", file("broken", "node:$2y$10$short\n"), "", authfile.HTPasswd, "not a bcrypt hash"},
		{"tokens missing", "", filepath.Join(dir, "nope"), authfile.BearerTokens, "no such file"},
		{"tokens empty", "", file("empty", "\n \n"), authfile.BearerTokens, "holds no tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := authfile.Load(tc.htpasswd, tc.tokens)
			var e *authfile.Error
			if !errors.As(err, &e) || e.File != tc.file || !strings.Contains(err.Error(), tc.says) || !strings.HasPrefix(err.Error(), tc.file+": ") {
				t.Fatalf("Load = %v, want an error of %s saying %q", err, tc.file, tc.says)
			}
		})
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/cache"
)

// sync serve fails closed: an htpasswd or bearer-token file with no entry is an error naming
// the flag and the file, and nothing listens, rather than a listener with no authentication.
func TestServeRefusesEmptyAuthFiles(t *testing.T) {
	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "cache")
	c, err := cache.Open(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	empty := filepath.Join(dir, "empty")
	comments := filepath.Join(dir, "comments")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(comments, []byte("# no users yet\n\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"empty htpasswd", []string{"--htpasswd", empty}, []string{"--htpasswd", empty, "no user:bcrypt-hash entries"}},
		{"htpasswd of comments only", []string{"--htpasswd", comments}, []string{"--htpasswd", comments, "no user:bcrypt-hash entries"}},
		{"empty token file", []string{"--bearer-tokens", empty}, []string{"--bearer-tokens", empty, "holds no tokens"}},
		{"token file of blanks", []string{"--bearer-tokens", filepath.Join(dir, "blank")}, []string{"--bearer-tokens", "blank", "holds no tokens"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(dir, "blank"), []byte(" \n\t\n"), 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := serveCommand()
			cmd.SetArgs(append([]string{"--cache", cacheDir, "--listen", "127.0.0.1:0", "--work-dir", filepath.Join(dir, "git")}, tc.args...))
			cmd.SetOut(&strings.Builder{})
			cmd.SetErr(&strings.Builder{})
			err := cmd.ExecuteContext(ctx)
			if ctx.Err() != nil {
				t.Fatal("sync serve started listening with an empty authentication file")
			}
			if err == nil {
				t.Fatal("sync serve accepted an empty authentication file")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

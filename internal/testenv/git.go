package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// GitServer serves bare repositories over Git's smart-HTTP protocol with `git http-backend`
// behind net/http/cgi. Repositories are made with the git CLI by CreateRepo and Commit.
type GitServer struct {
	// URL is the server's base; a repository is at URL + "/" + name + ".git".
	URL  string
	Root string
	git  string
	work string
	srv  *http.Server
	ln   net.Listener
}

// StartGitServer starts a Git server keeping its repositories under dir.
func StartGitServer(ctx context.Context, dir string) (*GitServer, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("git server: the git CLI is needed (apt-get install git): %w", err)
	}
	g := &GitServer{Root: filepath.Join(dir, "git-repos"), work: filepath.Join(dir, "git-work"), git: git}
	for _, d := range []string{g.Root, g.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	handler := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + g.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
		},
		InheritEnv: []string{"PATH", "HOME"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server: listen: %w", err)
	}
	g.ln = ln
	g.URL = "http://" + ln.Addr().String()
	g.srv = &http.Server{Handler: handler}
	go g.srv.Serve(ln)
	return g, nil
}

// RepoURL returns the clone URL of a repository.
func (g *GitServer) RepoURL(name string) string { return g.URL + "/" + name + ".git" }

// CreateRepo creates a bare repository with one commit on branch main holding files
// (slash-separated path to content) and returns that commit's hash.
func (g *GitServer) CreateRepo(ctx context.Context, name string, files map[string]string) (string, error) {
	bare := filepath.Join(g.Root, name+".git")
	work := filepath.Join(g.work, name)
	if _, err := os.Stat(bare); err == nil {
		return "", fmt.Errorf("git repo %s already exists", name)
	}
	if _, err := g.run(ctx, "", "init", "--quiet", "--bare", "--initial-branch=main", bare); err != nil {
		return "", err
	}
	if _, err := g.run(ctx, "", "clone", "--quiet", bare, work); err != nil {
		return "", err
	}
	if _, err := g.run(ctx, work, "checkout", "--quiet", "-B", "main"); err != nil {
		return "", err
	}
	return g.Commit(ctx, name, files, "initial content")
}

// Commit writes files into the repository (an empty content removes the file), commits them on
// main with message, pushes, and returns the new commit's hash. Author and dates are fixed so the
// same calls give the same hashes.
func (g *GitServer) Commit(ctx context.Context, name string, files map[string]string, message string) (string, error) {
	work := filepath.Join(g.work, name)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(work, filepath.FromSlash(p))
		if files[p] == "" {
			if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := g.run(ctx, work, "add", "--all"); err != nil {
		return "", err
	}
	if _, err := g.run(ctx, work, "commit", "--quiet", "--allow-empty", "-m", message); err != nil {
		return "", err
	}
	if _, err := g.run(ctx, work, "push", "--quiet", "origin", "main"); err != nil {
		return "", err
	}
	out, err := g.run(ctx, work, "rev-parse", "HEAD")
	return strings.TrimSpace(out), err
}

// Tag creates a lightweight tag at the current head of main and pushes it.
func (g *GitServer) Tag(ctx context.Context, name, tag string) error {
	work := filepath.Join(g.work, name)
	if _, err := g.run(ctx, work, "tag", tag); err != nil {
		return err
	}
	_, err := g.run(ctx, work, "push", "--quiet", "origin", tag)
	return err
}

// AnnotatedTag creates an annotated tag with message at the current head of main and pushes it.
func (g *GitServer) AnnotatedTag(ctx context.Context, name, tag, message string) error {
	work := filepath.Join(g.work, name)
	if _, err := g.run(ctx, work, "tag", "--annotate", "--message", message, tag); err != nil {
		return err
	}
	_, err := g.run(ctx, work, "push", "--quiet", "origin", tag)
	return err
}

// Branch creates branch at the current head of main and pushes it; main moves on without it.
func (g *GitServer) Branch(ctx context.Context, name, branch string) error {
	_, err := g.run(ctx, filepath.Join(g.work, name), "push", "--quiet", "origin", "main:refs/heads/"+branch)
	return err
}

func (g *GitServer) run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.git, append([]string{"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Ferry Test", "GIT_AUTHOR_EMAIL=test@ferry.invalid", "GIT_AUTHOR_DATE=2026-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Ferry Test", "GIT_COMMITTER_EMAIL=test@ferry.invalid", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z",
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Stop stops serving.
func (g *GitServer) Stop() error { return g.srv.Close() }

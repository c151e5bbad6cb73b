package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Registry is a CNCF Distribution registry on loopback, with filesystem storage and deletes
// enabled. It speaks plain HTTP.
type Registry struct {
	// Host is host:port, the form image references use ("127.0.0.1:5000/repo:tag").
	Host string
	// URL is http://Host.
	URL  string
	proc *process
}

// StartRegistry starts a registry keeping its data under dir.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	bin, err := ToolPath("registry")
	if err != nil {
		return nil, err
	}
	return retryStart(func() (*Registry, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		host := loopback(port)
		storage := filepath.Join(dir, "registry-data")
		if err := os.MkdirAll(storage, 0o755); err != nil {
			return nil, err
		}
		config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, storage, host)
		cfgPath := filepath.Join(dir, "registry.yaml")
		if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
			return nil, err
		}
		p, err := startProcess("registry", bin, []string{"serve", cfgPath}, nil, dir)
		if err != nil {
			return nil, err
		}
		r := &Registry{Host: host, URL: "http://" + host, proc: p}
		if err := p.waitReady(ctx, 30*time.Second, func(ctx context.Context) error {
			return httpStatus(ctx, r.URL+"/v2/", http.StatusOK, nil)
		}); err != nil {
			p.stop()
			return nil, err
		}
		return r, nil
	})
}

// Stop stops the registry.
func (r *Registry) Stop() error { return r.proc.stop() }

// httpStatus GETs url with client (http.DefaultClient when nil) and checks the status code.
func httpStatus(ctx context.Context, url string, want int, client *http.Client, header ...string) error {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	return nil
}

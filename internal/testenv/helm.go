package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// HelmRepo is a Helm HTTP chart repository: an index.yaml and chart archives served over HTTP.
// Charts are packaged with Helm's SDK by AddChart.
type HelmRepo struct {
	// URL is the repository's base, as `helm repo add` takes it.
	URL string
	Dir string
	mu  sync.Mutex
	srv *http.Server
}

// chartTime is the modification time written into chart archives, so the same chart always
// packages to the same bytes.
var chartTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// StartHelmRepo starts a Helm repository keeping its files under dir.
func StartHelmRepo(ctx context.Context, dir string) (*HelmRepo, error) {
	h := &HelmRepo{Dir: filepath.Join(dir, "helm-repo")}
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("helm repo: listen: %w", err)
	}
	h.URL = "http://" + ln.Addr().String()
	if err := h.reindex(); err != nil {
		ln.Close()
		return nil, err
	}
	files := http.FileServer(http.Dir(h.Dir))
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock() // never serve an index that is being rewritten
		defer h.mu.Unlock()
		files.ServeHTTP(w, r)
	})}
	go h.srv.Serve(ln)
	return h, nil
}

// AddChart packages a chart named name at version with the given templates (file name to
// content) and values, adds it to the index, and returns the archive's path.
func (h *HelmRepo) AddChart(name, version string, templates map[string]string, values map[string]any) (string, error) {
	c := &chart.Chart{
		Metadata: &chart.Metadata{
			APIVersion:  chart.APIVersionV2,
			Name:        name,
			Version:     version,
			AppVersion:  version,
			Description: "a chart made by Ferry's tests",
			Type:        "application",
		},
		Values:  values,
		ModTime: chartTime,
	}
	for file, content := range templates {
		c.Templates = append(c.Templates, &common.File{Name: "templates/" + file, Data: []byte(content), ModTime: chartTime})
	}
	return h.add(c, name+"-"+version)
}

// AddChartDir packages the chart in dir (a folder as `helm package` takes it), with version in
// place of its Chart.yaml's when version is not empty, adds it to the index, and returns the
// archive's path.
func (h *HelmRepo) AddChartDir(dir, version string) (string, error) {
	c, err := loader.LoadDir(dir)
	if err != nil {
		return "", fmt.Errorf("helm repo: load %s: %w", dir, err)
	}
	if version != "" {
		c.Metadata.Version = version
	}
	return h.add(c, dir)
}

// add packages c into the repository (what names it in errors) and reindexes.
func (h *HelmRepo) add(c *chart.Chart, what string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	path, err := chartutil.Save(c, h.Dir)
	if err != nil {
		return "", fmt.Errorf("helm repo: package %s: %w", what, err)
	}
	return path, h.reindexLocked()
}

func (h *HelmRepo) reindex() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reindexLocked()
}

func (h *HelmRepo) reindexLocked() error {
	idx, err := repo.IndexDirectory(h.Dir, h.URL)
	if err != nil {
		return fmt.Errorf("helm repo: index %s: %w", h.Dir, err)
	}
	idx.SortEntries()
	return idx.WriteFile(filepath.Join(h.Dir, "index.yaml"), 0o644)
}

// Stop stops serving.
func (h *HelmRepo) Stop() error { return h.srv.Close() }

package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a MinIO S3 server on loopback, speaking plain HTTP.
type MinIO struct {
	// Endpoint is host:port, the form minio-go takes.
	Endpoint  string
	AccessKey string
	SecretKey string
	proc      *process
}

// StartMinIO starts MinIO keeping its data under dir.
func StartMinIO(ctx context.Context, dir string) (*MinIO, error) {
	bin, err := ToolPath("minio")
	if err != nil {
		return nil, err
	}
	return retryStart(func() (*MinIO, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		console, err := freePort()
		if err != nil {
			return nil, err
		}
		data := filepath.Join(dir, "minio-data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		m := &MinIO{Endpoint: loopback(port), AccessKey: "ferry-test", SecretKey: "ferry-test-secret"}
		env := []string{
			"MINIO_ROOT_USER=" + m.AccessKey,
			"MINIO_ROOT_PASSWORD=" + m.SecretKey,
			"MINIO_UPDATE=off",
			"MINIO_BROWSER=off",
		}
		args := []string{"server", "--quiet", "--address", m.Endpoint, "--console-address", loopback(console), data}
		p, err := startProcess("minio", bin, args, env, dir)
		if err != nil {
			return nil, err
		}
		m.proc = p
		if err := p.waitReady(ctx, 60*time.Second, func(ctx context.Context) error {
			return httpStatus(ctx, "http://"+m.Endpoint+"/minio/health/ready", http.StatusOK, nil)
		}); err != nil {
			p.stop()
			return nil, err
		}
		return m, nil
	})
}

// Client returns a minio-go client for the server.
func (m *MinIO) Client() (*minio.Client, error) {
	return minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Secure: false,
	})
}

// MakeBucket creates a bucket and returns its name.
func (m *MinIO) MakeBucket(ctx context.Context, name string) (string, error) {
	c, err := m.Client()
	if err != nil {
		return "", err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", fmt.Errorf("make bucket %s: %w", name, err)
	}
	return name, nil
}

// Stop stops MinIO.
func (m *MinIO) Stop() error { return m.proc.stop() }

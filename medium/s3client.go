package medium

import (
	"fmt"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// NewS3Client connects to an S3-compatible endpoint (host:port), over plain HTTP when insecure,
// with credentials from the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or
// MINIO_ROOT_USER and MINIO_ROOT_PASSWORD) or ~/.aws/credentials.
func NewS3Client(endpoint string, insecure bool) (*minio.Client, error) {
	client, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{}}),
		Secure: !insecure,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", endpoint, err)
	}
	return client, nil
}

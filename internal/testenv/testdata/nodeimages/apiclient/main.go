// Command apiclient is a test workload image of the test node of internal/testenv: it reaches the
// API server the way an in-cluster program does (rest.InClusterConfig: KUBERNETES_SERVICE_HOST
// and _PORT, the Pod's ServiceAccount token and CA), asks GET /version and, with --want-user,
// asks a SelfSubjectReview who its token says it is. It exits 0 only when both answer as they
// should, and prints what it got either way.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"k8s.io/client-go/rest"
)

func main() {
	wantUser := flag.String("want-user", "", "the user name the SelfSubjectReview must return (system:serviceaccount:NS:NAME)")
	flag.Parse()
	if err := run(*wantUser); err != nil {
		fmt.Fprintln(os.Stderr, "apiclient:", err)
		os.Exit(1)
	}
}

func run(wantUser string) error {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("in-cluster config: %w", err)
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	client.Timeout = 10 * time.Second
	fmt.Println("host", cfg.Host)

	var version struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := call(client, http.MethodGet, cfg.Host+"/version", nil, &version); err != nil {
		return err
	}
	if version.GitVersion == "" {
		return fmt.Errorf("GET %s/version: no gitVersion in the answer", cfg.Host)
	}
	fmt.Println("version", version.GitVersion)

	if wantUser == "" {
		return nil
	}
	review := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	var got struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := call(client, http.MethodPost, cfg.Host+"/apis/authentication.k8s.io/v1/selfsubjectreviews", review, &got); err != nil {
		return err
	}
	fmt.Println("user", got.Status.UserInfo.Username)
	if got.Status.UserInfo.Username != wantUser {
		return fmt.Errorf("the token is user %q, want %q", got.Status.UserInfo.Username, wantUser)
	}
	return nil
}

// call sends body (JSON, if any) and decodes a 2xx answer into out.
func call(client *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	return nil
}

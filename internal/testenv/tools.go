package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// ToolsBinEnv names the environment variable that points at the built tools.
const ToolsBinEnv = "FERRY_TOOLS_BIN"

// ToolPath returns the path of a tool built by `make tools`, looking in $FERRY_TOOLS_BIN and
// then in the .tools/bin folder of the enclosing Ferry checkout.
func ToolPath(name string) (string, error) {
	var dirs []string
	if d := os.Getenv(ToolsBinEnv); d != "" {
		dirs = append(dirs, d)
	}
	if root, err := repoRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, ".tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("tool %q not found in %v: run 'make tools' to build it", name, dirs)
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freePort asks the kernel for a loopback port that is free now. Another process may take it
// before the server binds it, so starters retry on failure.
func freePort() (int, error) { return freePortOn("127.0.0.1") }

// freePortOn is freePort on a local address other than loopback (the test node's address).
func freePortOn(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Package testenv starts the real servers Ferry's tests and demo run against: a CNCF
// Distribution registry, MinIO, etcd with kube-apiserver, a Git smart-HTTP server
// (git http-backend) and a Helm HTTP repository.
//
// Each server listens on a free loopback port, keeps its data in a directory it is given, is
// polled until it answers, and is stopped (and its process group killed) by Stop. The
// binaries come from `make tools` (.tools/bin, or the directory in FERRY_TOOLS_BIN); a missing
// binary is an error that says to run `make tools`, never a skipped test.
//
// Every server has two entry points: StartX(ctx, dir) for a TestMain or a program that shares
// one server across many tests, and NewX(t) that starts one for a single test and stops it in
// t.Cleanup.
package testenv

// Package e2e holds Ferry's end-to-end tests: the whole flow, mirror to bundle to offline
// sync to a reconciled API server, against real servers started by internal/testenv.
package e2e

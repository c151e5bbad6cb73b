// Package agent is `sync run`, the unattended agent inside the disconnected cluster. It watches
// its sources (a drop directory, an S3 bucket prefix, an OCI registry repository), waits until a
// bundle is complete, reads each new bundle's root to order them, and imports them in ascending
// sequence through cache.Import (verify while copying, atomic commit). After an accepted import
// it serves the new bundle (registry and Git remote), collects garbage and reconciles the
// cluster; it also reconciles every interval. A rejected bundle is left where it was and
// reported in the log, a Prometheus counter, a Kubernetes Event on the ConfigMap
// ferry-sync-status (which holds a JSON summary) and the cache's record of rejections ('sync
// status'). Transient errors are retried with exponential backoff and are not rejections.
//
// Replicas elect a leader with a Lease: every replica serves the cache read-only; only the
// leader imports and reconciles. /healthz, /readyz and /metrics answer on their own listener.
// The agent reaches nothing but the API server, its configured sources and its own listeners.
// docs/agent.md describes the configuration and the behaviour.
package agent

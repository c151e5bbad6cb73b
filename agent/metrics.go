package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferry-gitops/ferry/reconcile"
)

// metrics are the agent's Prometheus metrics, in a registry of their own (served on /metrics).
type metrics struct {
	reg *prometheus.Registry

	accepted      prometheus.Counter
	rejected      *prometheus.CounterVec
	importBytes   prometheus.Counter
	importSeconds *prometheus.HistogramVec
	sequence      prometheus.Gauge
	reconcileDur  *prometheus.HistogramVec
	reconciles    *prometheus.CounterVec
	drift         prometheus.Counter
	leader        prometheus.Gauge
	sourceErrors  *prometheus.CounterVec
	stuck         *prometheus.CounterVec
	expires       prometheus.Gauge
	expired       prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_bundles_accepted_total",
			Help: "Bundles verified and imported whole into the cache."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bundles_rejected_total",
			Help: "Bundles rejected, by the check that refused them (signature, rollback, chain, digest, ...)."}, []string{"check"}),
		importBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_import_bytes_total",
			Help: "Bytes read from the media and verified while importing, whatever the outcome."}),
		importSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_import_seconds",
			Help:    "How long imports took, by result (accepted, rejected, failed).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}, []string{"result"}),
		sequence: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_current_bundle_sequence",
			Help: "Sequence of the cache's current bundle (0: none yet)."}),
		reconcileDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_reconcile_duration_seconds",
			Help:    "How long each reconciliation of one object took, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}, []string{"kind"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_reconcile_total",
			Help: "Reconciliations of one object, by kind and result (ready, failed)."}, []string{"kind", "result"}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_drift_corrections_total",
			Help: "Objects changed in the cluster while their desired state was not, put back by a reconciliation."}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_leader",
			Help: "1 while this replica is the leader: it imports and reconciles."}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_source_errors_total",
			Help: "Transient errors reaching a source or reading from it (retried with backoff), by source."}, []string{"source"}),
		stuck: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_candidates_stuck_total",
			Help: "Candidates whose root or import kept failing past their retries (the medium's fault, not the bundle's), by source; the later bundles of the source no longer wait for them."}, []string{"source"}),
		expires: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_current_bundle_expiry_timestamp_seconds",
			Help: "When the cache's current bundle expires, as a Unix time (0: no bundle yet)."}),
		expired: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_current_bundle_expired",
			Help: "1 while the cache's current bundle has expired: nothing fresh was accepted in time (see onExpiry)."}),
	}
	m.reg.MustRegister(m.expires, m.expired, m.accepted, m.rejected, m.importBytes, m.importSeconds, m.sequence, m.reconcileDur, m.reconciles, m.drift, m.leader, m.sourceErrors, m.stuck,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// onResult records one reconciliation (reconcile.Options.OnResult).
func (m *metrics) onResult(r reconcile.Result) {
	m.reconcileDur.WithLabelValues(r.Kind).Observe(r.Duration.Seconds())
	result := "failed"
	if r.Ready {
		result = "ready"
	}
	m.reconciles.WithLabelValues(r.Kind, result).Inc()
	if r.DriftCorrected > 0 {
		m.drift.Add(float64(r.DriftCorrected))
	}
}
